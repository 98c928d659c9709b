"""dmixed.engines.dask.handover: per-group results cut into pieces for the way to the
driver give the whole arrays' values bit for bit, and the results hold the pieces (not
the cluster)."""

from __future__ import annotations

import warnings

import dask.dataframe as dd
import numpy as np
import pytest

import dmixed
from dmixed.engines.dask import handover
from dmixed.engines.dask.blocks import reorder_parts
from dmixed.engines.dask.handover import RowPieces, cut, rows

from ..._synth import make_data


@pytest.mark.parametrize("shape", [(0, 3), (1, 3), (1, 3, 3), (7, 1), (1000, 2), (1000, 2, 2)])
@pytest.mark.parametrize("piece_bytes", [1, 100, 1 << 20])
def test_pieces_are_the_rows_of_the_array_in_order(monkeypatch, shape, piece_bytes):
    """Runs of whole rows, in order, none over the size unless one row is (one row a
    piece then); an empty array is one empty piece of its dtype and row shape."""
    monkeypatch.setattr(handover, "PIECE_BYTES", piece_bytes)
    a = np.random.default_rng(0).normal(size=shape)
    pieces = RowPieces.of(a)
    assert len(pieces) == len(a)
    assert all(p.shape[1:] == a.shape[1:] and p.dtype == a.dtype for p in pieces.items)
    row_bytes = a[:1].nbytes if len(a) else 0
    assert all(p.nbytes <= max(piece_bytes, row_bytes) for p in pieces.items)
    assert all(len(p) for p in pieces.items) or pieces.items[0].shape == a.shape
    np.testing.assert_array_equal(pieces.whole(), a)
    assert pieces.whole().shape == a.shape


def test_only_arrays_of_rows_are_cut():
    """A ragged or bordered result (an object holding its own arrays) and a scalar go
    as they are; the rows of cut and uncut parts concatenate in block order."""
    thing = object()
    assert cut(thing) is thing
    scalar = np.float64(1.0)
    assert cut(scalar) is scalar
    a, b = np.arange(6.0).reshape(3, 2), np.arange(6.0, 10.0).reshape(2, 2)
    got = rows([cut(a), b])
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate([a, b]))


@pytest.mark.parametrize("width", [(), (2,), (3, 3)])
def test_pieces_in_sorted_group_order_are_the_whole_arrays(monkeypatch, width):
    """Put in sorted group order, the blocks' pieces give the whole blocks' arrays bit
    for bit (empty blocks included)."""
    monkeypatch.setattr(handover, "PIECE_BYTES", 40)
    rng = np.random.default_rng(1)
    blocks = [rng.normal(size=(n, *width)) for n in (5, 0, 13, 1)]
    position = rng.permutation(sum(len(b) for b in blocks))
    want = reorder_parts(position, blocks)
    got = reorder_parts(position, rows([cut(b) for b in blocks]))
    np.testing.assert_array_equal(got, want)
    assert got.shape == want.shape


CASES = {
    "q=1": ("y ~ x1 + x2", {"groups": "g", "re_formula": "1"}),
    "q=2": ("y ~ x1 + x2", {"groups": "g", "re_formula": "1 + x1"}),
    "q=3": ("y ~ x1", {"groups": "g", "re_formula": "1 + x1 + x2"}),
    "vc": ("y ~ x1 + x2", {"groups": "g", "re_formula": "1", "vc_formula": {"s": "0 + C(sub)"}}),
}


def _fit(formula: str, kw: dict, data, client):
    ddf = dd.from_pandas(data, npartitions=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm(formula, ddf, **kw)
        return model.fit(client=client, engine="distributed")


def _random_effects(res) -> tuple:
    """The BLUPs and their conditional covariances of every group, as the results
    give them."""
    frame = res.random_effects_frame().to_numpy()
    covs = [res.random_effects_cov[g].to_numpy() for g in res.random_effects]
    return frame, covs


@pytest.mark.parametrize("case", list(CASES))
def test_the_blups_in_pieces_are_those_of_whole_arrays_after_the_cluster_is_closed(
    monkeypatch, case
):
    """Fits whose BLUPs cross in pieces of a few rows give the same random effects,
    bit for bit, as fits whose blocks send them whole; read after the cluster is
    closed (the results hold the pieces, never futures)."""
    from distributed import Client, LocalCluster

    formula, kw = CASES[case]
    data = make_data(n_groups=60, min_size=5, vc_sd=0.5, seed=7)
    data["x2"] = data["x2"] + 0.1 * data["x1"] ** 2  # a third column not collinear
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        monkeypatch.setattr(handover, "PIECE_BYTES", 1 << 30)  # one piece a block: whole
        whole = _fit(formula, kw, data, client)
        whole_effects = _random_effects(whole)
        monkeypatch.setattr(handover, "PIECE_BYTES", 48)
        cut_res = _fit(formula, kw, data, client)
    got = _random_effects(cut_res)  # first read: after the close
    np.testing.assert_array_equal(got[0], whole_effects[0])
    for a, b in zip(got[1], whole_effects[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert cut_res.llf == whole.llf


@pytest.mark.parametrize("n_groups", [1, 7])
def test_few_groups_of_blups_in_pieces(client, monkeypatch, n_groups):
    """One group (one row, one piece) or a few over three partitions (blocks with no
    groups among them): the engine's BLUPs in pieces are those sent whole."""
    data = make_data(n_groups=n_groups, min_size=5, seed=3)
    ddf = dd.from_pandas(data, npartitions=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
        stats = model.statistics(client=client, engine="distributed")
    engine = stats.engine
    lam = np.array([[0.8, 0.0], [0.3, 0.5]])
    w = np.array([-0.5, 0.2, 0.1, 1.0])
    monkeypatch.setattr(handover, "PIECE_BYTES", 1 << 30)
    whole = engine.random_effects(lam, w)
    monkeypatch.setattr(handover, "PIECE_BYTES", 8)
    got = engine.random_effects(lam, w)
    assert whole[0].shape == (n_groups, 2) and whole[1].shape == (n_groups, 2, 2)
    for a, b in zip(got, whole, strict=True):
        np.testing.assert_array_equal(a, b)


def test_statistics_gathered_in_pieces_fit_as_whole_ones(client, monkeypatch):
    """Statistics gathered to the driver for an in-process optimization (few groups)
    cross in pieces too: the same fit, bit for bit, as from whole arrays."""
    data = make_data(n_groups=40, min_size=5, seed=11)
    cuts = []
    monkeypatch.setattr(handover, "cut", lambda value: cuts.append(1) or cut(value))
    fits = []
    for piece_bytes in (1 << 30, 40):
        monkeypatch.setattr(handover, "PIECE_BYTES", piece_bytes)
        ddf = dd.from_pandas(data, npartitions=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
            stats = model.statistics(client=client, engine="local")
            assert stats.engine.name != "dask"
            fits.append((model.fit(client=client, engine="local"), stats.engine.gather()))
    assert cuts  # the blocks' statistics were cut on their way
    (a, (zz_a, zxy_a)), (b, (zz_b, zxy_b)) = fits
    assert a.llf == b.llf
    np.testing.assert_array_equal(a.fe_params, b.fe_params)
    np.testing.assert_array_equal(zz_a, zz_b)
    np.testing.assert_array_equal(zxy_a, zxy_b)
    np.testing.assert_array_equal(
        a.random_effects_frame().to_numpy(), b.random_effects_frame().to_numpy()
    )


@pytest.mark.parametrize("forms", [("upper", "upper"), ("upper", "whole"), ("whole", "whole")])
def test_covariances_sent_as_triangles_or_whole_are_the_whole_matrices(monkeypatch, forms):
    """Blocks' conditional covariances sent as upper triangles (one compiled pass) or
    whole, in pieces or not: put in place and unfolded, the whole symmetric matrices in
    sorted group order, bit for bit; triangles stay triangles (unfolded once, after the
    reorder) only where every block sent them."""
    from dmixed.kernels.compiled import upper_unfolded

    monkeypatch.setattr(handover, "PIECE_BYTES", 200)
    rng = np.random.default_rng(3)
    a = rng.normal(size=(90, 2, 2))
    sym = a + a.transpose(0, 2, 1)
    rows_, cols_ = np.triu_indices(2)
    sizes = (50, 40)
    parts, start = [], 0
    for form, size in zip(forms, sizes, strict=True):
        block = sym[start : start + size]
        start += size
        sent = np.ascontiguousarray(block[:, rows_, cols_]) if form == "upper" else block
        parts.append(cut(sent))
    position = rng.permutation(90)
    pieces, upper = handover.covariance_rows(parts)
    assert upper == (forms == ("upper", "upper"))
    got = reorder_parts(position, pieces)
    if upper:
        got = upper_unfolded(got)
    want = np.empty_like(sym)
    want[position] = sym
    np.testing.assert_array_equal(got, want)
