"""Row kernels (rows → per-group statistics) against sums written out in the test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.kernels import conditionals, native, rows
from dmixed.stats.packed import PackedLayout
from dmixed.stats.standardize import Standardization

from .._native_marks import built, called
from .._synth import QUICK


def test_statistics_add_over_row_splits():
    """Statistics are sums over rows: any split of the rows adds up to the whole."""
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 10, 300)
    y, x, z = rng.normal(size=300), rng.normal(size=(300, 3)), rng.normal(size=(300, 2))
    w = rng.uniform(0.5, 2, 300)
    whole, glob = kernels.accumulate_packed(codes, 10, y, x, z, w)
    cut = rng.permutation(300)
    a, b = cut[:120], cut[120:]
    pa, ga = kernels.accumulate_packed(codes[a], 10, y[a], x[a], z[a], w[a])
    pb, gb = kernels.accumulate_packed(codes[b], 10, y[b], x[b], z[b], w[b])
    np.testing.assert_allclose(pa + pb, whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ga["xyxy"] + gb["xyxy"], glob["xyxy"], rtol=1e-12)
    assert ga["sum_log_weights"] + gb["sum_log_weights"] == pytest.approx(glob["sum_log_weights"])
    nobs, zz, zxy = kernels.unpack_statistics(whole, 2)
    st = kernels.accumulate_statistics(codes, 10, y, x, z, w)
    np.testing.assert_array_equal(nobs, st["nobs"])
    np.testing.assert_allclose(zz, st["zz"], rtol=1e-14)
    np.testing.assert_allclose(zxy, st["zxy"], rtol=1e-14)
    i = codes == 4
    sw = np.sqrt(w[i])
    np.testing.assert_allclose(zz[4], (z[i] * sw[:, None]).T @ (z[i] * sw[:, None]), rtol=1e-12)


def _packed_by_hand(codes, n_groups, y, x, z, w):
    """Packed statistics straight from the definition, one group at a time."""
    xy = np.column_stack([x, y])
    r, k = z.shape[1], xy.shape[1]
    sw = np.ones(len(y)) if w is None else np.sqrt(w)
    out = np.zeros((n_groups, kernels.packed_width(r, k)))
    rows, cols = np.tril_indices(r)
    for g in range(n_groups):
        i = codes == g
        zi, xyi = z[i] * sw[i, None], xy[i] * sw[i, None]
        out[g, 0] = i.sum()
        out[g, 1 : 1 + rows.size] = (zi.T @ zi)[rows, cols]
        out[g, 1 + rows.size :] = (zi.T @ xyi).ravel()
    return out


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(1, 60),
    n_groups=st.integers(1, 8),
    z_cols=st.lists(
        st.sampled_from(["ones", "x1", "x2", "y", "new", "zero", "binary"]), min_size=1, max_size=4
    ),
    intercept=st.booleans(),
    weighted=st.booleans(),
    layout=st.sampled_from(["rows", "columns", "views"]),
)
def test_packed_statistics_with_shared_columns(
    seed, n_rows, n_groups, z_cols, intercept, weighted, layout
):
    """Random-effect columns that repeat fixed-effect columns, the response, ones or
    zeros (the cases the product plan shares or skips) give the defined sums, whether
    ``X`` is row-major (copied), column-major (used in place) or ``Z̃`` is a view of it
    (as the design builds ``1 + x``: columns known equal without a compare)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_groups, n_rows)
    x = rng.normal(size=(n_rows, 2))
    if intercept:
        x = np.column_stack([np.ones(n_rows), x])
    y = rng.normal(size=n_rows)
    source = {
        "ones": np.ones(n_rows),
        "x1": x[:, -2],
        "x2": x[:, -1],
        "y": y,
        "new": rng.normal(size=n_rows),
        "zero": np.zeros(n_rows),
        "binary": rng.integers(0, 2, n_rows).astype(float),
    }
    z = np.column_stack([source[c] for c in z_cols])
    if layout != "rows":
        x = np.asfortranarray(x)
    if layout == "views":
        z = x[:, : min(2, x.shape[1])]
    w = rng.uniform(0.2, 3.0, n_rows) if weighted else None
    packed, glob = kernels.accumulate_packed(codes, n_groups, y, x, z, w)
    np.testing.assert_allclose(
        packed, _packed_by_hand(codes, n_groups, y, x, z, w), rtol=1e-12, atol=1e-12
    )
    xyw = np.column_stack([x, y]) * (np.sqrt(w)[:, None] if weighted else 1.0)
    np.testing.assert_allclose(glob["xyxy"], xyw.T @ xyw, rtol=1e-12, atol=1e-12)
    acc = np.zeros((packed.shape[1], n_groups))
    kernels.accumulate_packed_into(acc, codes, y, x, z, w)
    kernels.accumulate_packed_into(acc, codes, y, x, z, w)  # adds, does not overwrite
    np.testing.assert_allclose(acc.T, 2 * packed, rtol=1e-12, atol=1e-12)


def test_product_plan_shares_columns():
    """Random intercept and slope on x1 with four fixed effects: 9 sums for 14 columns."""
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(50), rng.normal(size=(50, 3))])
    xy = np.column_stack([x, rng.normal(size=50)])
    terms, column_term = kernels.product_plan(list(xy.T), x[:, :2])
    assert len(column_term) == 14
    assert len(terms) == 9
    assert sum(t[0] == "prod" for t in terms) == 4  # x1², x1·x2, x1·x3, x1·y


@settings(max_examples=30)
@given(st.integers(0, 10**6), st.integers(0, 3), st.integers(0, 3))
def test_product_plan_with_known_ones_is_the_plan_found_by_looking(seed, q, n_ones):
    """Ones columns named by the caller (a broadcast indicator among them) give the
    plan the look at every column gives: the same terms, in the same order."""
    rng = np.random.default_rng(seed)
    n = 40
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2)), np.zeros(n)])
    xy = list(np.column_stack([x, rng.normal(size=n)]).T)
    pool = [np.ones(n), np.broadcast_to(1.0, (n,)), np.zeros(n), xy[1], rng.normal(size=n)]
    z = [pool[i] for i in rng.integers(0, len(pool), q + n_ones)]
    k = len(xy)
    ones = [0] + [k + a for a, col in enumerate(z) if (col == 1.0).all() and rng.random() < 0.7]
    assert kernels.product_plan(xy, z, ones) == kernels.product_plan(xy, z)


@pytest.mark.parametrize("weighted", [False, True])
def test_few_rows_into_many_groups_sum_the_same(monkeypatch, weighted):
    """Rows far fewer than the accumulator's groups are summed over the groups present
    (cost in rows, not groups): bitwise the same as the sums over all groups."""
    rng = np.random.default_rng(3)
    n_groups, n = 10_000, 300
    codes = rng.integers(0, n_groups, n)
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    y = rng.normal(size=n)
    z = x[:, :2].copy()
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    start = rng.normal(size=(kernels.packed_width(2, 4), n_groups))
    compact = start.copy()
    glob_c = kernels.accumulate_packed_into(compact, codes, y, x, z, w)
    monkeypatch.setattr(kernels, "COMPACT_BELOW", 0)  # sums over all groups
    dense = start.copy()
    glob_d = kernels.accumulate_packed_into(dense, codes, y, x, z, w)
    np.testing.assert_array_equal(compact, dense)
    np.testing.assert_array_equal(glob_c["xyxy"], glob_d["xyxy"])


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(1, 400),
    n_groups=st.integers(1, 60),
    z_cols=st.sampled_from([("ones",), ("ones", "x1"), ("x1", "new"), ("ones", "x1", "zero")]),
    weighted=st.booleans(),
    shifted=st.booleans(),
    sparse_rows=st.booleans(),
)
def test_compiled_pass_equals_numpy_reference(
    seed, n_rows, n_groups, z_cols, weighted, shifted, sparse_rows
):
    """The compiled per-row pass (numba) gives the numpy reference's statistics bit for
    bit: shared, constant and zero columns, prior weights, shifted columns (with the
    within-group sums of a random intercept) and few rows into many groups."""
    from dmixed.stats.standardize import Standardization

    rng = np.random.default_rng(seed)
    if sparse_rows:
        n_groups *= 50  # fewer rows than groups / COMPACT_BELOW: the groups present
    codes = rng.integers(0, n_groups, n_rows)
    offset = 1e6 if shifted else 0.0
    x = np.asfortranarray(np.column_stack([np.ones(n_rows), rng.normal(size=(n_rows, 2))]))
    x[:, 1:] += offset
    y = rng.normal(size=n_rows) + offset
    source = {"ones": x[:, 0], "x1": x[:, 1], "new": rng.normal(size=n_rows)}
    source["zero"] = np.zeros(n_rows)
    z = np.column_stack([source[c] for c in z_cols])
    w = rng.uniform(0.2, 3.0, n_rows) if weighted else None
    std = Standardization.choose(y, x, z) if shifted else None
    width = kernels.packed_width(z.shape[1], 4)
    start = rng.normal(size=(width, n_groups))
    out = {}
    for compiled in (False, True):
        acc = start.copy()
        glob = kernels.accumulate_packed_into(acc, codes, y, x, z, w, std, compiled=compiled)
        out[compiled] = acc, glob
    np.testing.assert_array_equal(out[True][0], out[False][0])
    for key in ("xyxy", "n", "sum_log_weights", "within"):
        np.testing.assert_array_equal(out[True][1][key], out[False][1][key])


def test_compiled_pass_takes_read_only_and_writable_columns_together(monkeypatch):
    """A read-only endog (a pandas column's ``to_numpy()`` under copy-on-write) next to
    writable exog columns: the compiled pass gives the numpy reference's fit (numba
    failed to type the mixed tuple of columns)."""
    import dmixed

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(30), 6)
    x = np.column_stack([np.ones(g.size), rng.normal(size=(g.size, 2))])
    y = x @ [1.0, 2.0, 0.5] + rng.normal(size=30)[g] + rng.normal(size=g.size)
    y.flags.writeable = False
    fits = {}
    for choice in ("numpy", "numba"):
        monkeypatch.setenv("DMIXED_KERNELS", choice)
        fits[choice] = dmixed.MixedLM(y, x, g).fit()
    np.testing.assert_allclose(fits["numba"].params, fits["numpy"].params, rtol=1e-12)
    assert fits["numba"].llf == pytest.approx(fits["numpy"].llf, rel=1e-12)


def test_kernels_environment_variable(monkeypatch):
    """DMIXED_KERNELS forces the implementation; another value is refused by name."""
    from dmixed.kernels.compiled import rows_compiled

    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    assert not rows_compiled(10**9)
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    assert rows_compiled(1)
    monkeypatch.setenv("DMIXED_KERNELS", "fast")
    with pytest.raises(ValueError, match="DMIXED_KERNELS"):
        rows_compiled(1)


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.sampled_from(rows.GRAM_DOTS_COLUMNS),
    extra_rows=st.integers(0, 3000),
    log_scales=st.lists(st.floats(-6, 6), min_size=4, max_size=4),
    offsets=st.lists(st.sampled_from([0.0, 1.0, -3.5, 1e9, -2e9]), min_size=4, max_size=4),
)
def test_column_gram_is_the_matrix_product_to_rounding(seed, k, extra_rows, log_scales, offsets):
    """The gram by dot products (long columns, few of them) is the matrix product's to
    1e-12 of the sums of the products' magnitudes (the scale of either's rounding), with
    columns of scales 1e-6 … 1e6 about offsets up to 2e9, ones and zeros among them."""
    rng = np.random.default_rng(seed)
    n = rows.GRAM_DOTS_MIN_ROWS + extra_rows
    cols = [offsets[j] + 10.0 ** log_scales[j] * rng.standard_normal(n) for j in range(k)]
    if k >= 2:
        cols[rng.integers(k)] = np.ones(n)
    if k >= 3:
        cols[rng.integers(k)] = np.zeros(n)
    matrix = np.column_stack(cols)
    gram = rows.column_gram(list(matrix.T))
    assert gram is not None
    expected = matrix.T @ matrix
    bound = np.abs(matrix).T @ np.abs(matrix)
    assert np.all(np.abs(gram - expected) <= 1e-12 * bound)
    np.testing.assert_array_equal(gram, gram.T)


def test_column_gram_leaves_short_or_wide_columns_to_the_matrix_product():
    """Below the rows or outside the columns where the dot products pay: None (the
    caller's matrix products), as for no columns at all."""
    short = [np.ones(rows.GRAM_DOTS_MIN_ROWS - 1)] * min(rows.GRAM_DOTS_COLUMNS)
    wide = [np.ones(rows.GRAM_DOTS_MIN_ROWS)] * (max(rows.GRAM_DOTS_COLUMNS) + 1)
    assert rows.column_gram(short) is None
    assert rows.column_gram(wide) is None
    assert rows.column_gram([np.ones(rows.GRAM_DOTS_MIN_ROWS)]) is None
    assert rows.column_gram([]) is None


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_prepared_gram_of_long_rows_is_the_gram_of_its_columns(shifted, weighted):
    """The rows' ``[X y]'[X y]`` where the dot products make it (long rows, three fixed
    effects): that of the shifted, weighted columns, to rounding, in the map's units."""
    from dmixed.stats.standardize import Standardization

    rng = np.random.default_rng(7)
    n = rows.GRAM_DOTS_MIN_ROWS + 17
    x = np.asfortranarray(np.column_stack([np.ones(n), 1e9 + rng.normal(size=(n, 2))]))
    y = 3.0 + 1e-3 * rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    std = Standardization.choose(y, x, x[:, :2], (0, 0)) if shifted else None
    prepared = rows.prepare_rows(y, x, x[:, :2], w, std)
    xy = np.column_stack(prepared.xcols)
    scale = np.ones(4) if prepared.sx is None else prepared.sx
    expected = xy.T @ xy / np.outer(scale, scale)
    bound = np.abs(xy).T @ np.abs(xy) / np.outer(scale, scale)
    assert np.all(np.abs(prepared.gram - expected) <= 1e-12 * bound)


_SCALES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-1100, 1100).map(lambda e: 2.0**e if e < 1024 else np.inf),
)


@settings(max_examples=200)
@given(
    x_scale=st.lists(_SCALES, min_size=1, max_size=4),
    y_scale=_SCALES,
    z_scale=st.lists(_SCALES, min_size=0, max_size=3),
    vc_scale=st.lists(st.integers(-60, 60).map(lambda e: 2.0**e), max_size=2),
)
def test_the_maps_scales_are_read_as_numpy_reads_them(x_scale, y_scale, z_scale, vc_scale):
    """Whether a map has an extreme scale, and the factor of every packed column, from
    the scales as Python floats: numpy's answers on the scales' arrays (log2 of 0, inf,
    a negative or NaN scale as numpy takes them; the same products and quotients)."""
    p, q = len(x_scale), len(z_scale)
    std = Standardization(
        np.zeros(p), np.array(x_scale), 0.0, y_scale, np.zeros(q), np.array(z_scale),
        -1, -1, np.array(vc_scale),
    )  # fmt: skip
    sx = np.append(std.x_scale, std.y_scale)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        extreme = bool(
            (np.abs(np.log2(sx)) > rows.EXTREME_SCALE_LOG2).any()
            or (np.abs(np.log2(std.z_scale)) > rows.EXTREME_SCALE_LOG2).any()
        )
        assert rows.extreme_scales(std) == extreme
        widths = [2] * len(vc_scale)
        layout = PackedLayout(q + sum(widths), p + 1)
        sz = np.ones(layout.r)
        sz[:q] = std.z_scale
        sz[q:] = std.slot_scales(widths)
        i, j = layout.zz_index
        expected = np.concatenate([[1.0], 1.0 / (sz[i] * sz[j]), (1.0 / np.outer(sz, sx)).ravel()])
        got = rows.column_scales(std, layout, widths)
    if np.all(expected == 1.0):
        assert got is None
    else:
        np.testing.assert_array_equal(got.view(np.int64), expected.view(np.int64))


@settings(max_examples=80)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(1, 80),
    n_groups=st.integers(1, 9),
    q=st.integers(1, 3),
    p=st.integers(1, 4),
    intercept=st.booleans(),
    z_of_x=st.booleans(),
    log_scale=st.integers(-6, 6),
)
def test_plain_statistics_are_the_general_pass_bit_for_bit(
    seed, n_rows, n_groups, q, p, intercept, z_of_x, log_scale
):
    """The common case's pass (no weights, components or shifts) gives the general
    pass's statistics to the bit: the same sums whether a random-design column is an
    ``exog`` column's memory, a copy of it, or its own; with or without intercepts."""
    rng = np.random.default_rng(seed)
    codes = np.sort(rng.integers(0, n_groups, n_rows))
    codes = np.unique(codes, return_inverse=True)[1].reshape(-1).astype(np.int64)
    n_groups = int(codes.max()) + 1
    x = np.asfortranarray(rng.normal(size=(n_rows, p)) * 2.0**log_scale)
    if intercept:
        x[:, 0] = 1.0
    y = rng.normal(size=n_rows) * 3.0 + 0.5
    q = min(q, p) if z_of_x else q
    z = x[:, :q] if z_of_x else np.asfortranarray(rng.normal(size=(n_rows, q)))
    if not z_of_x and intercept:
        z = np.asfortranarray(np.column_stack([np.ones(n_rows), z[:, 1:]]))
    if rng.integers(2) and z_of_x:
        z = np.asfortranarray(z.copy())  # equal in value, not in memory
    ones = (0 if intercept else -1, 0 if intercept else -1)
    std = Standardization.choose(y, x, z, ones)
    if std.y_shift != 0.0 or std.x_shift.any() or std.z_shift.any():
        return  # shifted columns: the general pass's (plain_statistics declines them)
    layout = PackedLayout(q, p + 1)
    acc = np.zeros((layout.width, n_groups))
    glob = kernels.accumulate_packed_into(acc, codes, y, x, z, None, std, compiled=False)
    got = rows.plain_statistics(codes, n_groups, y, x, z, std)
    assert got is not None
    zz, zxy, nobs, plain_glob = got
    block = kernels.StatsBlock.from_entry_major(zz, zxy)
    ref_zz = np.empty((q, q, n_groups))
    for i, (a, b) in enumerate(zip(*layout.zz_index, strict=True)):
        ref_zz[a, b] = ref_zz[b, a] = acc[1 + i]
    ref_zxy = acc[1 + layout.n_zz :].reshape(q, p + 1, n_groups)
    assert zz.tobytes() == ref_zz.tobytes()
    assert zxy.tobytes() == ref_zxy.tobytes()
    np.testing.assert_array_equal(nobs, np.rint(acc[0]).astype(np.int64))
    assert block.n_groups == n_groups
    for key in ("xyxy", "within", "column_sums"):
        a, b = glob[key], plain_glob[key]
        assert (a is None) == (b is None), key
        if a is not None:
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), key
    assert int(glob["n"]) == int(plain_glob["n"])
    assert glob["sum_log_weights"] == plain_glob["sum_log_weights"]


@called
@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(0, 300),
    n_groups=st.integers(1, 40),
    n_cols=st.integers(1, 5),
    n_terms=st.integers(1, 20),
    order=st.sampled_from(["sorted", "shuffled", "runs"]),
    c_order=st.booleans(),
)
def test_term_sums_are_bincount_bit_for_bit(
    seed, n_rows, n_groups, n_cols, n_terms, order, c_order
):
    """The extension's one pass over the rows (:func:`rows.plain_statistics`' terms)
    gives ``np.bincount``'s sums to the bit: each entry 0 plus its rows' values in row
    order, whether a group's rows follow one another, come back in several runs or are
    shuffled; columns of any stride (those of a C-ordered matrix), more terms than one
    pass holds, groups with no row, negative zeros and values far apart in size."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_groups, n_rows).astype(np.int64)
    if order == "sorted":
        codes.sort()
    elif order == "runs":
        codes = np.repeat(codes[: max(n_rows // 4, 1)], 4)[:n_rows]
    n_rows = codes.size
    values = rng.normal(size=(n_rows, n_cols)) * 10.0 ** rng.integers(-8, 9, (n_rows, n_cols))
    values[rng.random(values.shape) < 0.1] = -0.0
    matrix = np.ascontiguousarray(values) if c_order else np.asfortranarray(values)
    columns = [matrix[:, j] for j in range(n_cols)]
    pairs = [(int(rng.integers(n_cols)), int(rng.integers(-1, n_cols))) for _ in range(n_terms)]
    table = np.full((n_terms, n_groups), np.nan)
    ext = native.extension()
    assert ext is not None
    ext.term_sums(codes, columns, pairs, n_groups, table)
    for t, (u, v) in enumerate(pairs):
        weights = columns[u] if v < 0 else columns[u] * columns[v]
        want = np.bincount(codes, weights=weights, minlength=n_groups)
        assert table[t].tobytes() == want.tobytes(), (t, u, v)


@called
def test_term_sums_refuse_what_they_cannot_read():
    """Codes outside the groups, codes not int64, a column of another length or type,
    a term that names no column: refused by name, nothing read out of bounds."""
    ext = native.extension()
    assert ext is not None
    col = np.ones(4)
    table = np.empty((1, 2))
    with pytest.raises(ValueError, match=r"codes: a code outside \[0, 2\)"):
        ext.term_sums(np.array([0, 1, 2, 1]), [col], [(0, -1)], 2, table)
    with pytest.raises(ValueError, match=r"codes: a code outside"):
        ext.term_sums(np.array([0, -1, 0, 1]), [col], [(0, -1)], 2, table)
    with pytest.raises(TypeError, match="codes: an int64 buffer"):
        ext.term_sums(np.zeros(4, dtype=np.int32), [col], [(0, -1)], 2, table)
    with pytest.raises(ValueError, match=r"columns\[1\]: a 1-d float64 buffer of 4"):
        ext.term_sums(np.zeros(4, dtype=np.int64), [col, np.ones(3)], [(0, 1)], 2, table)
    with pytest.raises(ValueError, match=r"columns\[0\]"):
        ext.term_sums(np.zeros(4, dtype=np.int64), [col.astype(np.float32)], [(0, -1)], 2, table)
    with pytest.raises(ValueError, match=r"terms\[0\]: a column position out of range"):
        ext.term_sums(np.zeros(4, dtype=np.int64), [col], [(1, -1)], 2, table)
    with pytest.raises(ValueError, match="table: 2 numbers needed, got 4"):
        ext.term_sums(np.zeros(4, dtype=np.int64), [col], [(0, -1)], 2, np.empty((2, 2)))


def test_plain_statistics_in_numpy_and_c_are_the_same(monkeypatch):
    """``DMIXED_NATIVE=numpy`` and the default give the same statistics to the bit."""
    rng = np.random.default_rng(3)
    codes = np.sort(rng.integers(0, 30, 400)).astype(np.int64)
    x = np.asfortranarray(np.column_stack([np.ones(400), rng.normal(size=(400, 2))]))
    y = rng.normal(size=400)
    std = Standardization.choose(y, x, x[:, :2], (0, 0))
    got = {}
    for choice in ("numpy", "auto"):
        monkeypatch.setenv(native.ENV_VAR, choice)
        out = rows.plain_statistics(codes, 30, y, x, x[:, :2], std)
        assert out is not None
        got[choice] = out
    for a, b in zip(got["numpy"][:3], got["auto"][:3], strict=True):
        assert a.tobytes() == b.tobytes()


def test_plain_statistics_decline_shifted_or_weighted_rows():
    """Rows the common case's pass does not take are left to the general pass."""
    rng = np.random.default_rng(5)
    x = np.asfortranarray(np.column_stack([np.ones(50), rng.normal(size=50) + 1e6]))
    y = rng.normal(size=50)
    codes = np.repeat(np.arange(5), 10)
    std = Standardization.choose(y, x, x[:, :1], (0, 0))
    assert std.x_shift.any()
    assert rows.plain_statistics(codes, 5, y, x, x[:, :1], std) is None
    c_order = np.ascontiguousarray(rng.normal(size=(50, 2)))
    std = Standardization.choose(y, c_order, c_order[:, :1], (-1, -1))
    assert rows.plain_statistics(codes, 5, y, c_order, c_order[:, :1], std) is None


def _group_level_rows(n_groups=40, vary=False, seed=0):
    """Rows of a random design ``[1, c]`` with ``c`` constant within each group (but the
    last group's last row, with ``vary``), ``X = [1, c, x2]``, sorted by group."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(n_groups), rng.integers(1, 9, n_groups)).astype(np.int64)
    c = rng.integers(-9, 10, n_groups).astype(float)[codes]
    if vary:
        c[-1] += 1.0
    x = np.asfortranarray(np.column_stack([np.ones(codes.size), c, rng.normal(size=codes.size)]))
    y = 300.0 * rng.normal(size=n_groups)[codes] + rng.normal(size=codes.size)
    return codes, x, y


def test_rank_one_within_is_wanted_where_the_columns_are_constant_within_groups():
    codes, x, y = _group_level_rows()
    std = Standardization.choose(y, x, x[:, :2], (0, 0))
    assert rows.wants_rank_one_within(std, codes, x[:, :2])
    assert not rows.wants_rank_one_within(std, codes, x[:, :2], vc_widths=(2,))
    assert not rows.wants_rank_one_within(std, codes, x[:, :1])  # r = 1: wants_within's
    codes_v, x_v, y_v = _group_level_rows(vary=True)
    assert not rows.wants_rank_one_within(std, codes_v, x_v[:, :2])
    swapped = np.asfortranarray(x[:, [1, 0]])  # column 0 not the intercept
    std_s = Standardization.choose(y, x, swapped, (0, 1))
    assert not rows.wants_rank_one_within(std_s, codes, swapped)


def test_rank_one_within_is_the_within_group_gram_from_either_pass():
    """``W`` of rows of a group-level slope, from the general pass and the common
    case's pass (the same bytes), is ``[X y]`` summed about each group's mean; none
    without ``rank_one`` or where a column varies within a group."""
    codes, x, y = _group_level_rows()
    n_groups = int(codes.max()) + 1
    z = x[:, :2]
    std = Standardization.choose(y, x, z, (0, 0))
    layout = PackedLayout(2, 4)
    acc = np.zeros((layout.width, n_groups))
    glob = kernels.accumulate_packed_into(acc, codes, y, x, z, None, std, rank_one=True)
    plain = rows.plain_statistics(codes, n_groups, y, x, z, std, rank_one=True)
    assert plain is not None and glob["within"] is not None
    assert glob["within"].tobytes() == plain[3]["within"].tobytes()
    xy = np.column_stack([x, y])
    sizes = np.bincount(codes).astype(float)
    means = np.array([np.bincount(codes, weights=col) for col in xy.T]).T / sizes[:, None]
    dev = xy - means[codes]
    sx = np.array([*std.x_scale.tolist(), std.y_scale])
    want = dev.T @ dev / np.outer(sx, sx)
    np.testing.assert_allclose(glob["within"], want, rtol=0, atol=1e-12 * np.abs(want).max())
    acc[:] = 0.0
    assert kernels.accumulate_packed_into(acc, codes, y, x, z, None, std)["within"] is None
    codes_v, x_v, y_v = _group_level_rows(vary=True)
    acc[:] = 0.0
    glob_v = kernels.accumulate_packed_into(
        acc, codes_v, y_v, x_v, x_v[:, :2], None, std, rank_one=True
    )
    assert glob_v["within"] is None


def _constant_by_group(codes: np.ndarray, columns: list) -> bool:
    """Whether every column is one value (not NaN) within each group, group by group."""
    for g in np.unique(codes):
        for col in columns:
            values = np.asarray(col, dtype=np.float64)[codes == g]
            if np.isnan(values).any() or not (values == values[0]).all():
                return False
    return True


@settings(max_examples=150, deadline=None)
@given(
    n_rows=st.integers(0, 700),
    n_groups=st.integers(1, 400),
    n_cols=st.integers(0, 3),
    kind=st.sampled_from(["constant", "varies", "nan", "one_row", "signed_zero"]),
    code_type=st.sampled_from(["int64", "int32", "uint32", "uint64"]),
    c_order=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_constant_within_in_c_and_numpy_agree(
    n_rows, n_groups, n_cols, kind, code_type, c_order, seed
):
    """The C pass and the numpy reference of :func:`rows.constant_within` give the answer
    of a check group by group: constant columns, one varying after many rows (past the
    reference's first rows), a NaN, groups of one row, ``-0.0`` against ``0.0``; codes
    of every integer type; columns strided (C order) or not."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_groups, n_rows).astype(code_type)
    per_group = rng.integers(-3, 4, (n_groups, max(n_cols, 1))).astype(np.float64)
    values = per_group[codes.astype(np.int64)][:, :n_cols]
    if kind == "signed_zero" and values.size:
        values[values == 0.0] = -0.0
        values[rng.random(values.shape) < 0.5] *= -1.0  # 0.0 and -0.0 in one group
    if n_rows and n_cols:
        at, col = int(rng.integers(n_rows)), int(rng.integers(n_cols))
        if kind == "varies":
            values[at, col] += 0.5
        elif kind == "nan":
            values[at, col] = np.nan
        elif kind == "one_row":
            codes = np.arange(n_rows).astype(code_type)  # every group one row
            values[at, col] = np.nan if rng.random() < 0.5 else values[at, col]
    matrix = np.ascontiguousarray(values) if c_order else np.asfortranarray(values)
    columns = [matrix[:, j] for j in range(n_cols)]
    want = _constant_by_group(codes, columns)
    got = {}
    for choice in ("numpy", "auto"):
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setenv(native.ENV_VAR, choice)
            got[choice] = rows.constant_within(codes, columns)
            bound = int(codes.max()) + 1 if n_rows else 1
            assert rows.constant_within(codes, columns, bound + 7) is got[choice]
    assert got["numpy"] is want and got["auto"] is want


@pytest.mark.parametrize("choice", ["numpy", "auto"])
def test_constant_within_finds_a_difference_in_any_prefix(monkeypatch, choice):
    """Many groups, each seen once in the first rows, a column differing in one group
    at one row: found wherever that row lies among the growing prefixes checked (the
    first rows, 16 times as many, all of them), by the C loop and by numpy."""
    monkeypatch.setenv(native.ENV_VAR, choice)
    rng = np.random.default_rng(5)
    g = 100_000
    codes = np.concatenate([rng.permutation(g), rng.permutation(g)]).astype(np.int64)
    col = rng.normal(size=g)[codes]
    assert rows.constant_within(codes, [col])
    assert rows.constant_within(codes, [col], g + 5)
    for at in (g + 10, 2 * g - 1):
        for first in (True, False):  # the group's first row or its second
            varied = col.copy()
            row = at if not first else int(np.flatnonzero(codes == codes[at])[0])
            varied[row] += 1.0
            assert not rows.constant_within(codes, [varied])


@called
def test_constant_within_refuses_what_it_cannot_read():
    """Codes outside the bound, codes not int64, a column of another length or type,
    too many columns: refused by name (the Python function then runs the reference)."""
    ext = native.extension()
    assert ext is not None
    col = np.ones(4)
    codes = np.array([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"codes: a code outside \[0, 2\)"):
        ext.constant_within(codes, [col], 2)
    with pytest.raises(ValueError, match=r"codes: a code outside"):
        ext.constant_within(np.array([0, -1, 0, 1]), [col], 2)
    with pytest.raises(TypeError, match="codes: an int64 buffer"):
        ext.constant_within(codes.astype(np.int32), [col], 3)
    with pytest.raises(ValueError, match=r"columns\[1\]: a 1-d float64 buffer of 4"):
        ext.constant_within(codes, [col, np.ones(3)], 3)
    with pytest.raises(ValueError, match=r"columns\[0\]"):
        ext.constant_within(codes, [col.astype(np.float32)], 3)
    with pytest.raises(ValueError, match="columns: at most 64"):
        ext.constant_within(codes, [col] * 65, 3)
    assert ext.constant_within(codes, [col] * 64, 3) is True
    assert ext.constant_within(np.empty(0, dtype=np.int64), [np.empty(0)], 0) is True
    assert rows.constant_within(codes, [col], 2)  # out of the bound: the reference's
    assert rows.constant_within(codes, [np.arange(4.0) * 0] * 65)


def _wide_factor_rows(n: int, levels: int, seed: int):
    """Rows of ``y ~ x1 + C(store)`` (treatment coding: ``levels − 1`` indicator
    columns, one 1 a row at most) in groups of about eight rows, with one mostly-zero
    column of other values and a shifted one among them."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n // 8, n)
    store = rng.integers(0, levels, n)
    ind = (store[:, None] == np.arange(1, levels)[None, :]).astype(np.float64)
    odd = np.where(rng.random(n) < 0.05, rng.normal(size=n) * 1e3 + 7e5, 0.0)
    x = np.asfortranarray(np.column_stack([np.ones(n), rng.normal(size=n), ind, odd]))
    y = 2.0 + x[:, 1] + 0.3 * store + rng.normal(size=n)
    return codes, x, y


@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_column_gram_is_the_matrix_product(monkeypatch, seed):
    """``C'C`` with a wide factor's zeros skipped: the indicators' block bit for bit
    (sums of ones), every entry to rounding of the dense product; None where too few
    columns are mostly zero."""
    monkeypatch.setattr(conditionals, "SPARSE_MIN_COLUMNS", 64)
    codes, x, y = _wide_factor_rows(1200, 90, seed)
    assert rows.sparse_split([x[:, j] for j in range(x.shape[1])][:63]) is None
    cols = [x[:, j] for j in range(x.shape[1])] + [y]
    split = rows.sparse_split(cols)
    assert split is not None and split[0].size >= x.shape[1] - 2
    gram = rows.sparse_column_gram(cols)
    xy = np.column_stack(cols)
    want = xy.T @ xy
    ind = slice(2, x.shape[1] - 1)
    np.testing.assert_array_equal(gram[ind, ind], want[ind, ind])
    bound = np.abs(xy).T @ np.abs(xy)
    assert np.all(np.abs(gram - want) <= 1e-13 * bound)
    assert rows.sparse_column_gram(cols[:3] + cols[-1:]) is None  # few columns
    dense = [c + 1.0 for c in cols]  # no zeros
    assert rows.sparse_column_gram(dense) is None


@pytest.mark.parametrize("weighted", [False, True])
def test_wide_factor_statistics_are_the_dense_passes(monkeypatch, weighted):
    """The data pass of a wide factor's rows with the mostly-zero columns kept sparse
    (the gram, the within-group residuals of a random intercept): the per-group sums
    bit for bit, ``[X y]'[X y]`` and ``W`` to rounding of the dense pass's."""
    monkeypatch.setattr(conditionals, "SPARSE_MIN_COLUMNS", 64)
    codes, x, y = _wide_factor_rows(1600, 80, 3)
    n_groups = int(codes.max()) + 1
    w = np.random.default_rng(4).uniform(0.5, 2.0, codes.size) if weighted else None
    z = x[:, :1]
    std = Standardization.choose(y, x, z, (0, 0))
    assert rows.wants_within(std, 1)
    layout = PackedLayout(1, x.shape[1] + 1)

    def run():
        acc = np.zeros((layout.width, n_groups))
        return acc, kernels.accumulate_packed_into(acc, codes, y, x, z, w, std)

    called_split = []
    real_split = rows.sparse_split
    monkeypatch.setattr(rows, "sparse_split", lambda c: called_split.append(1) or real_split(c))
    acc, glob = run()
    assert len(called_split) >= 2  # the gram and the within-group residuals
    monkeypatch.setattr(conditionals, "SPARSE_MIN_COLUMNS", 10**9)  # the dense products
    acc_d, glob_d = run()
    assert acc.tobytes() == acc_d.tobytes()
    for name in ("xyxy", "within"):
        got, want = glob[name], glob_d[name]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


#: the extension as the module gives it, before any test replaces the function
_EXTENSION = native.extension


def _counting_extension(calls: list[int]):
    """The extension with its ``within_sums`` counted into ``calls`` (None where the
    module would give None)."""
    ext = _EXTENSION()
    if ext is None:
        return None

    class Counting:
        def __getattr__(self, name):
            attr = getattr(ext, name)
            if name != "within_sums":
                return attr

            def counted(*args):
                calls.append(1)
                return attr(*args)

            return counted

    return Counting()


@built
@settings(max_examples=30, **QUICK)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(1, 400),
    n_groups=st.integers(1, 300),
    offset=st.sampled_from([0.0, 1e6]),
    earlier=st.booleans(),
)
def test_extension_within_sums_are_the_numpy_sums(
    monkeypatch, seed, n_rows, n_groups, offset, earlier
):
    """The within-group sums of a random intercept in the extension's one pass over the
    rows (``within_sums``) against numpy's residuals and their BLAS product (the
    reference, ``DMIXED_NATIVE=numpy``): to 1e-12 of the largest entry, exactly
    symmetric; groups of one row, columns far from zero, sums added to an accumulator's
    earlier rows (Chan's correction) or to none; the other statistics bit for bit."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_groups, n_rows).astype(np.int64)
    x = np.asfortranarray(np.column_stack([np.ones(n_rows), rng.normal(size=(n_rows, 2))]))
    x[:, 1:] += offset
    y = rng.normal(size=n_rows) + offset
    z = x[:, :1]
    std = Standardization.choose(y, x, z, (0, 0))  # the intercept: within sums wanted
    width = kernels.packed_width(1, 4)
    start = np.zeros((width, n_groups))
    if earlier:
        start[0] = start[1] = rng.integers(0, 3, n_groups)
        start[2:] = rng.normal(size=(width - 2, n_groups)) * start[1]
    out = {}
    calls: list[int] = []
    monkeypatch.setattr(native, "extension", lambda: _counting_extension(calls))
    for choice in ("c", "numpy"):
        monkeypatch.setenv(native.ENV_VAR, choice)
        acc = start.copy()
        glob = kernels.accumulate_packed_into(acc, codes, y, x, z, None, std, compiled=False)
        out[choice] = acc, glob
        if choice == "c":
            assert calls, "the extension's within_sums did not run"
    np.testing.assert_array_equal(out["c"][0], out["numpy"][0])
    got, want = out["c"][1]["within"], out["numpy"][1]["within"]
    np.testing.assert_array_equal(got, got.T)
    scale = max(float(np.abs(want).max()), 1e-300)
    assert float(np.abs(got - want).max()) <= 1e-12 * scale
    for key in ("xyxy", "n", "sum_log_weights"):
        np.testing.assert_array_equal(out["c"][1][key], out["numpy"][1][key])


@built
def test_extension_within_sums_refuses_bad_codes_and_columns():
    """``within_sums`` names what it was given wrong: a code outside the groups, a column
    of another length."""
    from dmixed.kernels import c_sums

    codes = np.array([0, 1, 2], dtype=np.int64)
    cols = [np.ones(3), np.arange(3.0)]
    with pytest.raises(ValueError, match="codes: a code outside"):
        c_sums.within_sums(codes, cols, np.zeros((2, 2)), 2, np.empty((2, 2)))
    with pytest.raises(ValueError, match=r"columns\[1\]"):
        c_sums.within_sums(codes, [np.ones(3), np.ones(4)], np.zeros((2, 3)), 3, np.empty((2, 2)))
    with pytest.raises(ValueError, match="centres: 6 numbers needed"):
        c_sums.within_sums(codes, cols, np.zeros(5), 3, np.empty((2, 2)))


@built
def test_strided_codes_are_summed_as_contiguous_ones(monkeypatch):
    """Codes that are a strided view (``codes[::2]``) give the same sums as their
    contiguous copy (to rounding: they take numpy's residuals), on the extension's path
    and numpy's, and leave no accumulator half-updated."""
    rng = np.random.default_rng(5)
    n_rows, n_groups = 400, 30
    wide = rng.integers(0, n_groups, 2 * n_rows).astype(np.int64)
    strided, contiguous = wide[::2], np.ascontiguousarray(wide[::2])
    x = np.asfortranarray(np.column_stack([np.ones(n_rows), rng.normal(size=(n_rows, 2))]))
    y = rng.normal(size=n_rows)
    z = x[:, :1]
    std = Standardization.choose(y, x, z, (0, 0))
    width = kernels.packed_width(1, 4)
    for choice in ("c", "numpy"):
        monkeypatch.setenv(native.ENV_VAR, choice)
        got_acc, want_acc = np.zeros((width, n_groups)), np.zeros((width, n_groups))
        got = kernels.accumulate_packed_into(got_acc, strided, y, x, z, None, std, compiled=False)
        want = kernels.accumulate_packed_into(
            want_acc, contiguous, y, x, z, None, std, compiled=False
        )
        np.testing.assert_array_equal(got_acc, want_acc)
        # the strided codes take numpy's residuals, the contiguous ones (on "c") the
        # extension's compensated pass: the same sums to rounding
        scale = float(np.abs(want["within"]).max())
        assert float(np.abs(got["within"] - want["within"]).max()) <= 1e-12 * scale


def test_within_sums_of_mostly_zero_columns_round_as_the_dense_product(monkeypatch):
    """``W`` of a factor's indicator columns (the sparse products of :func:`rows.split_gram`)
    against the dense product of the same per-group residuals: each entry within 5e-14 of
    ``√(W_ii W_jj)``. Summed over all rows in one run, scipy's sparse products rounded
    them by up to 5.8e-13 at 80k rows (a user's 500-level factor: ℓ 8e-8 below the
    likelihood at its parameters)."""
    monkeypatch.setattr(conditionals, "SPARSE_MIN_COLUMNS", 20)
    rng = np.random.default_rng(3)
    n_groups, size, levels = 400, 200, 30
    codes = np.repeat(np.arange(n_groups), size).astype(np.int64)
    level = rng.integers(0, levels, codes.size)
    dummies = (level[:, None] == np.arange(1, levels)).astype(float)
    x = np.asfortranarray(
        np.column_stack([np.ones(codes.size), rng.normal(size=codes.size), dummies])
    )
    y = rng.normal(size=n_groups)[codes] + 0.01 * level + rng.normal(size=codes.size)
    z = x[:, :1]
    std = Standardization.choose(y, x, z, (0, 0))
    layout = PackedLayout(1, x.shape[1] + 1)
    acc = np.zeros((layout.width, n_groups))
    glob = kernels.accumulate_packed_into(acc, codes, y, x, z, None, std, compiled=False)
    assert rows.sparse_split([x[:, j] for j in range(x.shape[1])]) is not None
    xy = np.column_stack([x, y])
    means = np.array([np.bincount(codes, weights=col) for col in xy.T]).T / size
    dev = xy - means[codes]
    sx = np.array([*std.x_scale.tolist(), std.y_scale])
    want = dev.T @ dev / np.outer(sx, sx)
    diag = np.diagonal(want).copy()
    diag[0] = 1.0  # the intercept's within sums are zero
    bound = 5e-14 * np.sqrt(np.outer(diag, diag))
    err = np.abs(glob["within"] - want)
    assert np.all(err <= bound), float(np.max(err / bound)) * 5e-14


def test_plan_of_more_columns_than_the_compiled_pass_reads_takes_the_bincounts():
    """A plan reading more columns than the compiled pass takes (a wide factor's design:
    numba refused a tuple of 1000 columns, so a forced compiled fit of a 1100-level
    factor failed) gives the bincounts' sums even when asked for the compiled pass."""
    rng = np.random.default_rng(2)
    n, n_groups, width = 60, 7, 1001
    codes = rng.integers(0, n_groups, n).astype(np.int64)
    sources = [rng.normal(size=n) for _ in range(width)]
    terms = [("count",), ("zero",)] + [("col", u) for u in range(width)]
    terms += [("prod", 0, width - 1)]
    got = rows.plan_sums(codes, sources, terms, n_groups, compiled=True)
    want = rows.plan_sums(codes, sources, terms, n_groups, compiled=False)
    assert got[1] is None and want[1] is None
    for g, w in zip(got, want, strict=True):
        if w is not None:
            np.testing.assert_array_equal(g, w)
