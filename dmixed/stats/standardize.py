"""The coordinates the statistics are accumulated in, and the exact map back.

Raw cross-products of real columns lose the digits the likelihood needs: with
timestamps near 1.7e9 and a spread of days, ``Σ x²`` and ``(Σ x)²/n`` agree in their
first ten digits, and the residual quadratic form and the GLS solve subtract such
numbers (DESIGN.md §2).  So every column ``v`` of ``X``, ``y`` and the ``exog_re`` part
of ``Z̃`` is mapped to ``(v − c)/s``: a shift ``c`` near the data (the mean of the first
rows a task reads, where that is more than :data:`SHIFT_ABOVE` spreads from zero; else 0),
taken off every row before any sum, and a power-of-two scale ``s`` near its spread,
applied to the sums (exact: dividing by ``2^k`` loses nothing).  The map is kept with the
statistics; statistics in different maps (Dask tasks, ``update`` batches) are converted
exactly when added (:meth:`Standardization.conversion_to`), so they stay plain sums.

A shift is a reparametrization of the model only when the design holds a column of ones
(its *intercept*), so ``X`` and ``y`` are shifted only when ``X`` has one and ``Z`` only
when ``Z`` has one; scales always are.  With ``e_0`` the intercept column (its own shift
0 and scale 1)::

    X = X̃ T,   T = S_x + e_0 c_x'          y = s_y ỹ + c_y 1
    Z = Z̃ A,   A = S_z + e_0 c_z'

The fit in the new coordinates gives ``β̃, Ψ̃*, τ̃*, σ̃²`` and the likelihood ``ℓ̃``;
the model's own estimates are exactly::

    β  = T⁻¹ (s_y β̃ + c_y e_0)      Ψ* = A⁻¹ Ψ̃* A⁻ᵀ      τ* = τ̃*      σ² = s_y² σ̃²
    ℓ  = ℓ̃ − f log s_y − [REML] log|det T|        (f = n for ML, n − p for REML)

(``b = s_y A⁻¹ b̃`` for the random effects; the profile-scale Ψ* does not see ``s_y``.)
A variance component's columns share one scale and no shift (their variance is shared
by all of them): ``τ* = τ̃* / s_l²``.

Prior weights ``w`` get a scale too, ``s_w`` (a power of four, :func:`weight_scale`):
the statistics are sums of the rows weighted by ``w̃ = w / s_w`` (exact), whose squares
stay inside float64's range whatever the weights' unit.  Weights ``w̃`` are the same
model with ``σ̃² = σ²/s_w``, so ``Ψ̃*`` and ``τ̃*`` (relative to σ²) are ``s_w`` times
the model's and ``β``, ``ℓ`` (with its ``½ Σ log w̃``) and every absolute covariance
are unchanged.  That is the column map above with every column of ``X``, ``y`` and
``Z̃`` (its intercept too) times ``√s_w``: the estimates are mapped back by the
*estimate scales* (:meth:`Standardization.psi_matrix`,
:meth:`Standardization.tau_root_scales`, :attr:`Standardization.sigma_scale`), the
rows by the column scales alone.  ``s_w`` is 1 for weights whose geometric mean is
within ``2^±64`` of 1 (their statistics are then those of ``w`` bit for bit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import BadValuesError, CheckpointError, DataError
from .blup_cov import RaggedBlup
from .constant import constant_value
from .layout import tril_indices

#: Rows (from the start of the data) the shifts and scales are chosen from.
SAMPLE_ROWS = 65536


def nearest_power_of_two(value: float) -> float:
    """The power of two nearest ``value`` (> 0) in the log scale (``2^round(log2 v)``,
    numpy's ``log2``, half to even); 1 for 0 or non-finite: the scale of the map's
    columns.

    ``value = m 2^e`` (``½ ≤ m < 1``) is nearer ``2^e`` than ``2^(e−1)`` in the log
    scale exactly where ``m > 1/√2``: decided from ``m`` itself, without a numpy call
    (which costs more than the rest), where ``m`` is clearly on one side; near
    ``1/√2``, from numpy's ``log2`` rounded as ever (half to even)."""
    if not (math.isfinite(value) and value > 0):
        return 1.0
    mantissa, exponent = math.frexp(value)
    if abs(mantissa - _HALF_ROOT) <= _HALF_ROOT_MARGIN:
        exponent = round(float(np.log2(value)))
    elif mantissa < _HALF_ROOT:
        exponent -= 1
    return 2.0**exponent if exponent < 1024 else math.inf


#: ``1/√2``: the mantissa at which :func:`nearest_power_of_two` turns to the next power
_HALF_ROOT = math.sqrt(0.5)
#: How near ``1/√2`` a mantissa leaves :func:`nearest_power_of_two` to numpy's ``log2`` (far
#: beyond the few units of rounding by which ``log2`` may miss near it)
_HALF_ROOT_MARGIN = 1e-9


def _ones_column(matrix: np.ndarray) -> int:
    """Index of the first column that is exactly 1 in every row given, else −1."""
    if matrix.shape[0] == 0:
        return -1
    for j in range(matrix.shape[1]):
        column = matrix[:, j]  # the first rows first: a column of other values is told
        if column[0] != 1.0:  # by them, without a pass
            continue
        if (column[:8] == 1.0).all() and (column == 1.0).all():
            return j
    return -1


#: Weights' scales are powers of ``2^WEIGHT_STEP_LOG2``: 1 for weights whose geometric
#: mean is within ``2^±(WEIGHT_STEP_LOG2/2)`` of 1, where the statistics hold (their
#: squares stay far inside float64's range), and a coarse step otherwise, so that
#: partitions of the same data choose the same scale except near a step's edge.
WEIGHT_STEP_LOG2 = 128


def weight_scale(weights: np.ndarray | None) -> float:
    """``s_w``: the power of ``2^WEIGHT_STEP_LOG2`` nearest the geometric mean of the
    positive finite weights of the sample (1 without any; at most the largest such
    power float64 holds, ``2^896``)."""
    if weights is None:
        return 1.0
    value = constant_value(np.asarray(weights))
    if value is not None:  # one weight broadcast
        logs = np.log2(np.array([value], dtype=np.float64))
    else:
        w = np.asarray(weights, dtype=np.float64).ravel()[:SAMPLE_ROWS]
        logs = np.log2(w[np.isfinite(w) & (w > 0)])
    logs = logs[np.isfinite(logs)]
    if logs.size == 0:
        return 1.0
    step = float(np.round(float(np.mean(logs)) / WEIGHT_STEP_LOG2))
    # the largest step float64 holds (2^896): weights near 2^1000 would round to 2^1024
    # (from the largest exponent, 1023: log2 of the largest float64 rounds to 1024)
    step = min(step, float((np.finfo(np.float64).maxexp - 1) // WEIGHT_STEP_LOG2))
    return float(2.0 ** (WEIGHT_STEP_LOG2 * step))


def weights_unit_error(name: str | None, detail: str) -> DataError:
    """The refusal of prior weights in more than one unit (``name``: the weights column;
    None: "the prior weights"), one text for every engine: ``detail`` says by how much."""
    subject = f"the prior weights in column {name!r}" if name else "the prior weights"
    return DataError(
        f"{subject} are in more than one unit ({detail}); give all weights in "
        "one unit (e.g. divided by one constant, which changes only the reported scale)"
    )


def log2_range(weights: np.ndarray | None) -> tuple[float, float] | None:
    """``(log2 min, log2 max)`` of the positive finite ``weights``; None without any."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64).ravel()
    w = w[np.isfinite(w) & (w > 0)]
    if w.size == 0:
        return None
    return float(np.log2(w.min())), float(np.log2(w.max()))


def widened(a: tuple | None, b: tuple | None) -> tuple | None:
    """The smallest range holding the ranges ``a`` and ``b`` (None: empty)."""
    if a is None or b is None:
        return a if b is None else b
    return min(a[0], b[0]), max(a[1], b[1])


#: The widest span of the prior weights taken, as ``log2(largest / smallest)``: float64's
#: significand.  A row weighted ``2^-53`` times another or less adds nothing, after
#: rounding, to a sum the heavier row's products are in (``1 + 2^-53`` is 1), and the
#: statistics sum every group's rows together: where a group's heavier rows do not span
#: its random-effects columns (one heavy row and a random slope), or the data's do not
#: span the fixed effects', the directions only the lighter rows hold are lost to the
#: rounding of the others, and the fit is wrong or cannot start (``X'V⁻¹X`` or a
#: group's ``Z'WZ`` indefinite in floating point); the statistics cannot tell where.
#: Weights within it are summed in one unit, or in units a step of the weights' scale
#: apart that convert exactly (:meth:`Standardization.conversion_to`).
WEIGHT_SPAN_LOG2 = 53


def weights_span_error(name: str | None, width: float) -> BadValuesError:
    """The refusal of prior weights whose largest is ``2^width`` times their smallest
    (``width`` above :data:`WEIGHT_SPAN_LOG2`), naming the column ``name`` (None: "the
    prior weights"): values of the input that cannot be used, as weights that are not
    positive (the command line's exit status 3); its ``of_all_rows`` (True) keeps it
    from being worded for a partition (:func:`~dmixed.design.origin.in_partition`)."""
    subject = f"the prior weights in column {name!r}" if name else "the prior weights"
    # the exponent cut to a tenth, "over" it: rounded to a whole number, a span just
    # past the limit read "2^53 times the smallest, more than 2^53"
    # (the product width * 10 may round up to the next tenth: 63.0999... read 63.1)
    tenth = math.floor(width * 10.0) / 10.0
    width = tenth - 0.1 if tenth > width else tenth
    err = BadValuesError(
        f"{subject} are too far apart: the largest is over 2^{width:.1f} times the "
        f"smallest, more than the 2^{WEIGHT_SPAN_LOG2} a fit takes (float64's precision: a "
        "row weighted less than 2^-53 times another is lost to rounding in the sums they "
        f"share); give weights within 2^{WEIGHT_SPAN_LOG2} of each other, e.g. drop the "
        "lightest rows or raise their weights"
    )
    # a refusal of all the rows, not of the partition it is found in: worded as the
    # fit of all the rows words it (dmixed.design.origin.in_partition keeps it)
    err.of_all_rows = True
    return err


def check_weights_range(name: str | None, span: tuple[float, float] | None) -> None:
    """Refuse weights whose ``(log2 min, log2 max)`` ``span`` is wider than
    :data:`WEIGHT_SPAN_LOG2`, naming the column ``name``.

    Judged on the span of all the rows, whether they are read at once, in partitions
    (each partition's span kept in its map) or added to saved statistics (their span
    saved with them), so that every fit of the same rows agrees.

    Raises
    ------
    DataError
        :func:`weights_span_error`.
    """
    if span is not None and span[1] - span[0] > WEIGHT_SPAN_LOG2:
        raise weights_span_error(name, span[1] - span[0])


def added_weight_span(
    name: str | None,
    saved: tuple[float, float] | None,
    added: tuple[float, float] | None,
    scale: float,
) -> tuple[float, float] | None:
    """The span of the prior weights of saved statistics (``saved``) and of rows added
    to them (``added``), once judged as a fit of all the rows judges it
    (:func:`check_weights_range`, naming the column ``name``).

    Statistics saved without their span (``saved`` None: written before it was kept,
    whatever their weights) take rows whose weights are all within ``2^±(step/2)`` of
    the saved map's weight ``scale`` (its own band, where the saved rows' first weights
    were): all the rows are then within a step of each other only if the saved ones
    were, which their statistics cannot tell.  Other rows are refused, naming the column
    and what to do; the span of the result stays unknown (None).

    Raises
    ------
    DataError
        The weights of all the rows are more than a step apart, or (``saved`` None)
        added rows' weights outside the saved scale's band.
    """
    if added is None:
        return saved
    if saved is not None:
        span = widened(saved, added)
        check_weights_range(name, span)
        return span
    centre, half = float(np.log2(scale)), WEIGHT_STEP_LOG2 / 2
    if added[0] < centre - half or added[1] > centre + half:
        subject = f"the prior weights in column {name!r}" if name else "the prior weights"
        raise DataError(
            f"{subject} of the new rows reach 2^{added[0]:.1f} to 2^{added[1]:.1f}; the "
            "saved statistics record no span of their weights (saved by an older dmixed), "
            f"so the new weights must lie within 2^±{WEIGHT_STEP_LOG2 // 2:d} of their scale "
            f"2^{centre:.0f} to be known in one unit with them: rebuild the statistics from "
            "all the data (`dmixed fit` with a new statistics directory), which records it"
        )
    return None


def converted_sums(sums: np.ndarray, m_x: np.ndarray, ratio: float = 1.0) -> np.ndarray:
    """Column sums ``Σ w̃ [X̃ ỹ 1]`` (k + 1,) in another map, given by
    :meth:`Standardization.conversion_to`'s ``M_x`` and the weights' ``ratio``
    (:meth:`Standardization.weight_ratio`): ``√ρ M_x'`` on ``[X̃ ỹ]`` (``M_x`` holds the
    other ``√ρ``), ``ρ`` on the weights' own sum."""
    root = float(np.sqrt(ratio))
    head = m_x.T @ sums[:-1]
    return np.append(head if root == 1.0 else root * head, ratio * sums[-1])


def log_ratio_sum(n: float, ratio: float) -> float:
    """What ``Σ log w̃`` of ``n`` rows gains in a map of weights ``ratio`` times heavier
    (:meth:`Standardization.weight_ratio`): ``n log ρ`` (0 for ρ = 1)."""
    return 0.0 if ratio == 1.0 else float(n) * float(np.log(ratio))


#: A column is shifted when its mean is more than this many spreads from zero: below
#: that its cross-products lose at most a few bits (about (mean/spread)² ε), and a
#: column left as it is costs nothing per row.
SHIFT_ABOVE = 8.0


def _vc_scale(values: np.ndarray) -> float:
    """The power of two nearest the root mean square of the non-zero finite entries."""
    value = constant_value(np.asarray(values))
    if value is not None and value != 0 and np.isfinite(value):  # one value broadcast
        return nearest_power_of_two(abs(value))
    v = np.asarray(values, dtype=np.float64).ravel()[: SAMPLE_ROWS * 8]
    if v.size and v.min() == v.max() and v[0] != 0 and np.isfinite(v[0]):
        # one value throughout (an indicator component): its magnitude is the root mean
        # square, with the same rounding as below, without the masked copy and squares
        return nearest_power_of_two(abs(float(v[0])))
    v = v[np.isfinite(v) & (v != 0)]
    if v.size == 0:
        return 1.0
    size = float(np.max(np.abs(v)))
    return nearest_power_of_two(size * float(np.sqrt(np.mean((v / size) ** 2))))


def same_column(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise-equal columns (the same memory, or a cheap look at the first rows before
    the full compare)."""
    if a is b:
        return True
    if a.shape == b.shape and a.strides == b.strides and _same_start(a, b):
        return True
    if a.shape != b.shape:
        return False
    if a.shape[0] and a[0] != b[0]:  # told by the first row, without a call
        return False
    head = min(a.shape[0], 8)
    # np.array_equal's test for arrays of one shape, without its wrappers
    return bool((a[:head] == b[:head]).all() and (a == b).all())


def _same_start(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the arrays ``a`` and ``b`` start at one address.  For columns of one
    dtype whose entries are aligned to their own size, from whether their first entries
    overlap (``np.may_share_memory``, exact for one entry each: two such entries
    overlap only where they start at one address); else from numpy's array interface
    (which costs several times more)."""
    if (
        a.ndim == 1
        and a.shape[0]
        and a.dtype == b.dtype
        and a.dtype.alignment == a.dtype.itemsize
        and a.flags.aligned
        and b.flags.aligned
    ):
        return bool(np.may_share_memory(a[:1], b[:1]))
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


def _choose_columns(
    matrix: np.ndarray,
    intercept: int,
    shift: bool,
    chosen: tuple[np.ndarray, int, np.ndarray, np.ndarray] | None = None,
    settled: list[float | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Shift (the mean, when ``shift`` and it is more than :data:`SHIFT_ABOVE` spreads
    from zero) and power-of-two scale (the spread about the shift) of each column of
    the sample ``matrix``; the intercept column keeps (0, 1).  ``chosen`` is ``(sample,
    intercept, shifts, scales)`` of columns already chosen with the same ``shift``: a
    column equal to one of them (a random slope's column, also a fixed effect) takes
    its map, the very numbers it would get, without measuring it again.  ``settled``:
    per column, the scale of a column known to stay unshifted (:func:`settled_scale`),
    or None (measured here)."""
    k = matrix.shape[1]
    c = np.zeros(k)
    s = np.ones(k)
    todo = []  # the columns measured here
    for j in range(k):
        if j == intercept:
            continue
        if settled is not None and settled[j] is not None:
            s[j] = settled[j]
            continue
        known = _chosen_for(matrix[:, j], chosen)
        if known is not None:
            c[j], s[j] = known
        else:
            todo.append(j)
    if _run_of_rows(matrix, todo):  # the columns at once, the same numbers
        done = _shift_and_scale_rows(matrix[:, todo[0] : todo[-1] + 1].T, shift)
        if done is not None:
            c[todo], s[todo] = done
            return c, s
    for j in todo:
        col = matrix[:, j]
        size = float(np.max(np.abs(col))) if col.size else 0.0
        if not np.isfinite(size):  # NaN or ±inf in the sample: the finite entries only
            col = col[np.isfinite(col)]
            size = float(np.max(np.abs(col))) if col.size else 0.0
        if size == 0.0:
            continue
        c[j], s[j] = _shift_and_scale(col, size, shift)
    return c, s


#: How far beyond the rounding of its sums a column's moments must settle its map
#: (:func:`settled_scale`): relative to the column's spread about zero for the shift
#: test, and in ``log2`` of its spread for the power of two.  Any two orders of the sums
#: of ``n`` rows agree to about ``n ε`` (``1.5e-11`` at :data:`SAMPLE_ROWS` rows), far
#: inside it.
SETTLED_MARGIN = 1e-5
#: The least mean square a column's moments settle its map from: below, squares of its
#: entries may lose digits to underflow.
SETTLED_FLOOR = 2.0**-900


def settled_scale(total: float, squares: float, n: int, shift: bool) -> float | None:
    """The scale of a column that stays unshifted, from its sum ``total`` and sum of
    squares ``squares`` over the ``n`` rows of the sample, where they settle it beyond
    their rounding; else None (the column is measured: :func:`_shift_and_scale`).

    :func:`_shift_and_scale` makes the same two sums in another order (of the entries
    divided by the column's largest); both are within about ``n ε`` of the exact sums.
    So where the exact shift test (``|mean| > 8 sd``, made only with ``shift``) fails
    by more than :data:`SETTLED_MARGIN` of the column's root mean square, and the root
    mean square is not within :data:`SETTLED_MARGIN` of a midpoint between powers of
    two (in ``log2``), :func:`_shift_and_scale` finds the column unshifted and this
    same power of two: the map is the one measuring the rows gives, bit for bit.
    """
    if not (n > 0 and math.isfinite(total) and math.isfinite(squares)):
        return None
    about = squares / n
    if not about > SETTLED_FLOOR:
        return None
    rms = math.sqrt(about)
    if shift:
        mean = total / n
        spread = about - mean * mean
        if not spread > 0.0:
            return None
        if abs(mean) - SHIFT_ABOVE * math.sqrt(spread) > -SETTLED_MARGIN * rms:
            return None  # shifted, or too near the test's threshold to tell
    exponent = math.log2(rms)
    if abs(exponent - math.floor(exponent) - 0.5) < SETTLED_MARGIN:
        return None  # too near a midpoint between two powers of two
    return nearest_power_of_two(rms)


def _settled_columns(
    gram: np.ndarray | None, n: int, intercept: int, shift: bool
) -> list[float | None] | None:
    """:func:`settled_scale` of every column of ``[X y]`` from its gram ``[X y]'[X y]``
    over the ``n`` rows of the sample (sums from the intercept's row; without an
    intercept, ``shift`` is False and no sum is read); None without a gram."""
    if gram is None:
        return None
    squares = gram.diagonal().tolist()
    totals = gram[intercept].tolist() if intercept >= 0 else [0.0] * len(squares)
    return [settled_scale(t, q, n, shift) for t, q in zip(totals, squares, strict=True)]


def _run_of_rows(matrix: np.ndarray, todo: list[int]) -> bool:
    """Whether the columns ``todo`` of ``matrix`` are a run of columns, each contiguous
    in memory (a column-major design's, or the response): then their reductions along
    the rows of ``matrix[:, run].T`` add in the order of each column's own (numpy's
    pairwise sum over a contiguous last axis)."""
    if not todo or todo[-1] - todo[0] != len(todo) - 1 or matrix.shape[0] == 0:
        return False
    row, col = matrix.strides
    return row == matrix.itemsize and (len(todo) == 1 or col >= row * matrix.shape[0])


def _shift_and_scale_rows(block: np.ndarray, shift: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_shift_and_scale` of every row of ``block`` (columns of the sample laid
    along its rows, each contiguous: :func:`_run_of_rows`) in a few calls for all,
    the same numbers; None where a row is not finite or all zero (the caller measures
    each column alone).  A row the quick test may shift is measured alone."""
    # max |v| of a finite row is max(max v, −min v), without the temporary of |v|; the
    # reductions as the methods make them (mean: the sum over the row divided by its
    # length), without their Python wrappers
    sizes = np.maximum(np.maximum.reduce(block, axis=1), -np.minimum.reduce(block, axis=1))
    if not (np.isfinite(sizes).all() and (sizes > 0.0).all()):
        return None
    unit = block / sizes[:, None]
    length = unit.shape[1]
    means = (np.add.reduce(unit, axis=1) / length).tolist()
    about = (np.add.reduce(np.multiply(unit, unit, out=unit), axis=1) / length).tolist()
    shifts, scales = np.zeros(len(means)), np.ones(len(means))
    for i, size in enumerate(sizes.tolist()):
        if _unshifted(means[i], about[i], shift):
            scales[i] = _unshifted_scale(about[i], size)
        else:
            shifts[i], scales[i] = _shift_and_scale(block[i], size, shift)
    return shifts, scales


def _unshifted(mean: float, about_zero: float, shift: bool) -> bool:
    """Whether :func:`_shift_and_scale`'s quick test leaves a column of ``mean(unit)``
    and ``mean(unit²)`` unshifted without a second look at its rows."""
    if not shift:
        return True
    margin = abs(mean) - SHIFT_ABOVE * float(np.sqrt(max(about_zero - mean * mean, 0.0)))
    return margin < 0.0 and abs(margin) > 1e-6 * max(abs(mean), 1e-300)


def _unshifted_scale(about_zero: float, size: float) -> float:
    """The scale of an unshifted column: the power of two nearest its spread about zero
    (its size where that is 0: a column constant in the sample)."""
    spread = float(np.sqrt(about_zero)) * size
    return nearest_power_of_two(spread if spread != 0.0 else size)


def _chosen_for(col: np.ndarray, chosen) -> tuple[float, float] | None:
    """``(shift, scale)`` of a column of ``chosen`` (:func:`_choose_columns`) equal to
    ``col``, or None."""
    if chosen is None:
        return None
    sample, intercept, shifts, scales = chosen
    for i in range(sample.shape[1]):
        if i != intercept and same_column(col, sample[:, i]):
            return float(shifts[i]), float(scales[i])
    return None


def _shift_and_scale(col: np.ndarray, size: float, shift: bool) -> tuple[float, float]:
    """:func:`_choose_columns` for one column of finite values, ``size = max |col|``.

    ``unit = col/size`` (squares of columns near 1e±300 would leave float64's range);
    the spread about zero, ``√mean(unit²)``, decides the shift test ``|mean| > 8·sd``
    through ``sd² = mean(unit²) − mean²`` wherever that is far from the threshold, and
    through ``mean((unit − mean)²)`` near it: the same decision, and the same numbers,
    as computing both in full.
    """
    unit = col / size
    mean = float(np.mean(unit))
    square = np.multiply(unit, unit)
    about_zero = float(np.mean(square))  # the spread about 0, squared (in units)
    if _unshifted(mean, about_zero, shift):
        return 0.0, _unshifted_scale(about_zero, size)
    shifted = False
    if shift:
        margin = abs(mean) - SHIFT_ABOVE * float(np.sqrt(max(about_zero - mean * mean, 0.0)))
        if abs(margin) <= 1e-6 * max(abs(mean), 1e-300):  # near the threshold: in full
            sd = float(np.sqrt(np.mean(np.square(np.subtract(unit, mean, out=square)))))
            shifted = abs(mean) > SHIFT_ABOVE * sd
        else:
            shifted = margin > 0.0
    centre = mean * size if shifted else 0.0
    if shifted:
        about_zero = float(np.mean(np.square(np.subtract(unit, centre / size, out=square))))
    return centre, _unshifted_scale(about_zero, size)


@dataclass(frozen=True)
class Standardization:
    """Shifts and scales of the columns of ``X``, ``y`` and ``Z`` (see the module).

    Attributes
    ----------
    x_shift, x_scale : ndarray (p,)
        ``c_x`` and ``s_x`` (0 and 1 for the intercept, and shifts 0 without one).
    y_shift, y_scale : float
    z_shift, z_scale : ndarray (q,)
        For the ``exog_re`` columns of ``Z̃``.
    x_intercept, z_intercept : int
        The column of ones of ``X`` / ``Z`` (−1: none, and then no shifts there).
    vc_scale : ndarray (d,)
        One power-of-two scale per variance component, shared by all its columns (its
        variance is shared too): the columns become ``v / s_l``, so ``τ̃*_l = s_l² τ*_l``
        and a random effect ``b = b̃ / s_l``.  Empty: no components (all 1).
    weight_span : (float, float), optional
        ``(log2 min, log2 max)`` of the prior weights of the rows summed in this map so
        far (:meth:`with_weights`; None: none recorded).  Not part of the map (ignored
        by ``==``): the partitions' spans make the data's, which
        :func:`check_weights_range` judges as it judges the rows read at once.
    sample_rows : int
        The rows the map was chosen from (at most :data:`SAMPLE_ROWS`; 0: not chosen
        from rows).  Not part of the map (ignored by ``==``): partials chosen apart are
        converted to the map chosen from the most rows (a map chosen from a handful of
        rows is exact too, but scales the optimizer's coordinates poorly).
    x_ref, z_ref : ndarray (p,), (q,)
        Integer references already taken off columns of ``X`` / ``Z`` by the design
        (:mod:`dmixed.design.references`: the rows hold ``t − r``, exactly); empty: none.
        The rows are shifted by ``c`` only, and statistics convert between maps of equal
        references only; the estimates map back with the shift ``c + r`` (``T``,
        ``A``), so they are the model's in ``t``.
    x_basis : ndarray (p, p)
        ``D − I`` for a design whose columns ``X_d`` are not the formula's ``X`` but
        ``X = X_d D`` (:mod:`dmixed.design.centres`: products of columns read about
        their centres); empty: ``D = I``.  The rows are those of ``X_d``; the estimates
        map back through ``T D`` (:meth:`fe_matrix`), so they are the model's in ``X``.
    x_ones : ndarray (p,)
        For a design without an intercept whose columns give one in every row by
        construction (``0 + C(c)``: :func:`dmixed.design.centres.constant_weights`), the
        weights ``a`` with ``X_d a = 1``; empty: none.  Then ``y`` is shifted as beside
        an intercept (the same model: ``y − c_y = X_d (β_d − c_y a) + ...``) and the
        estimates map back with ``c_y`` on ``S_x a`` in place of ``e_0``
        (:meth:`y_ones`).
    """

    x_shift: np.ndarray
    x_scale: np.ndarray
    y_shift: float
    y_scale: float
    z_shift: np.ndarray
    z_scale: np.ndarray
    x_intercept: int
    z_intercept: int
    vc_scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_rows: int = field(default=0, compare=False)
    x_ref: np.ndarray = field(default_factory=lambda: np.zeros(0))
    z_ref: np.ndarray = field(default_factory=lambda: np.zeros(0))
    weight_scale: float = 1.0
    weight_span: tuple[float, float] | None = field(default=None, compare=False)
    x_basis: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    x_ones: np.ndarray = field(default_factory=lambda: np.zeros(0))

    # -- construction ------------------------------------------------------------------

    @classmethod
    def identity(cls, p: int, q: int) -> Standardization:
        """No shift, no scale: the raw columns (what statistics saved before had)."""
        return cls(np.zeros(p), np.ones(p), 0.0, 1.0, np.zeros(q), np.ones(q), -1, -1)

    def vc_scales(self, k_vc: int) -> np.ndarray:
        """``s_l`` of each of ``k_vc`` components (ones where none were chosen)."""
        return self.vc_scale if self.vc_scale.size == k_vc else np.ones(k_vc)

    def slot_scales(self, vc_widths) -> np.ndarray:
        """The scale of every variance-component slot (each its component's)."""
        if len(vc_widths) == 0:  # no components (the most models): no slots
            return np.zeros(0)
        widths = np.asarray(vc_widths, dtype=np.int64)
        return np.repeat(self.vc_scales(widths.size), widths)

    @classmethod
    def choose(
        cls,
        endog: np.ndarray,
        exog: np.ndarray,
        exog_re: np.ndarray,
        intercepts: tuple[int, int] | None = None,
        vc_vals: list[np.ndarray] | None = None,
        references: tuple[np.ndarray, ...] | None = None,
        weights: np.ndarray | None = None,
        gram: np.ndarray | None = None,
    ) -> Standardization:
        """The map for data whose first rows are these (at most :data:`SAMPLE_ROWS` used).

        Parameters
        ----------
        endog : ndarray (n,)
        exog : ndarray (n, p)
        exog_re : ndarray (n, q)
        intercepts : (int, int), optional
            The intercept columns of ``exog`` and ``exog_re`` (−1: none), from the
            formula (formulaic's intercept is 1 in every row of every partition);
            default: the first column that is 1 in every row given (all rows are
            checked, not only the sample: the caller gives all the rows it has).
        vc_vals : list of ndarray, optional
            Per variance component, its values (any shape; zeros are no entry): the
            component's scale is the power of two nearest their root mean square.
        references : (ndarray (p,), ndarray (q,)[, ndarray (p, p)]), optional
            The integer references the design took off the columns (``x_ref``,
            ``z_ref``; :func:`dmixed.design.references.column_references`), and the
            design's basis ``D − I`` where its products are of centred columns
            (``x_basis``; :func:`dmixed.design.centres.column_basis`).
        weights : ndarray (n,), optional
            The prior weights: their scale ``s_w`` (:data:`WEIGHT_STEP_LOG2`).
        gram : ndarray (p+1, p+1), optional
            ``[X y]'[X y]`` of all these rows (at most :data:`SAMPLE_ROWS`), unshifted
            and unweighted: the columns of ``X`` and ``y`` whose map it settles beyond
            its rounding (:func:`settled_scale`) take it without a look at their rows,
            the same map.
        """
        m = SAMPLE_ROWS
        x = np.asarray(exog, dtype=np.float64)[:m]
        y = np.asarray(endog, dtype=np.float64)[:m].reshape(-1, 1)
        z = np.asarray(exog_re, dtype=np.float64)[:m]
        if intercepts is None:
            xi, zi = _ones_column(np.asarray(exog)), _ones_column(np.asarray(exog_re))
        else:
            xi, zi = intercepts
        if gram is not None and y.shape[0] != np.shape(endog)[0]:
            raise ValueError("the gram of a map must be that of all its rows")
        settled = _settled_columns(gram, y.shape[0], xi, xi >= 0)
        ones = references[3] if references is not None and len(references) > 3 else None
        y_shifted = xi >= 0 or (ones is not None and bool(np.any(ones)))
        if settled is not None and xi < 0 and y_shifted:
            settled[-1] = None  # y about zero settled unshifted: measured, maybe shifted
        cx, sx = _choose_columns(x, xi, xi >= 0, None, None if settled is None else settled[:-1])
        cy, sy = _choose_columns(y, -1, y_shifted, None, None if settled is None else settled[-1:])
        same_shift = (zi >= 0) == (xi >= 0)
        cz, sz = _choose_columns(z, zi, zi >= 0, (x, xi, cx, sx) if same_shift else None)
        vc = np.array([_vc_scale(v) for v in (vc_vals or [])], dtype=np.float64)
        x_ref, z_ref = references[:2] if references is not None else (np.zeros(0), np.zeros(0))
        basis = references[2] if references is not None and len(references) > 2 else None
        if basis is not None and not np.any(basis):
            basis = None
        return cls(
            cx, sx, float(cy[0]), float(sy[0]), cz, sz, xi, zi, vc, int(y.shape[0]),
            np.asarray(x_ref, dtype=np.float64), np.asarray(z_ref, dtype=np.float64),
            weight_scale(weights),
            x_basis=np.zeros((0, 0)) if basis is None else np.asarray(basis, dtype=np.float64),
            x_ones=np.asarray(ones, dtype=np.float64) if xi < 0 and cy[0] else np.zeros(0),
        )  # fmt: skip

    def y_ones(self) -> np.ndarray | None:
        """``ã`` (p,) with ``X̃ ã = 1``: the coordinates of the constant in the
        statistics' columns, on which the response's shift ``c_y`` moves ``T β``
        (``T β = s_y β̃ + c_y ã``): ``e_0`` beside an intercept, ``S_x a`` for a design
        whose columns give one (:attr:`x_ones`); None where ``y`` is not shifted."""
        p = self.k_fe
        if self.x_intercept >= 0:
            out = np.zeros(p)
            out[self.x_intercept] = 1.0
            return out
        if self.x_ones.size == p and p and self.x_ones.any():
            return self.x_scale * self.x_ones  # X̃ = X_d S_x⁻¹ (no shifts there)
        return None

    def references(self) -> tuple[np.ndarray, np.ndarray]:
        """``(r_x (p,), r_z (q,))``, zeros where none."""
        x = self.x_ref if self.x_ref.size else np.zeros(self.k_fe)
        z = self.z_ref if self.z_ref.size else np.zeros(self.k_re)
        return x, z

    def basis(self) -> np.ndarray:
        """``D − I`` (p × p; zeros where the design's columns are the formula's)."""
        return self.x_basis if self.x_basis.size else np.zeros((self.k_fe, self.k_fe))

    def model_x_shift(self) -> np.ndarray:
        """``c_x + r_x``: the shift of ``X``'s columns from the model's ``t`` (the
        design's reference, then the statistics' shift)."""
        return self.x_shift + self.x_ref if self.x_ref.size else self.x_shift

    def model_z_shift(self) -> np.ndarray:
        """``c_z + r_z`` (:meth:`model_x_shift` for ``Z``)."""
        return self.z_shift + self.z_ref if self.z_ref.size else self.z_shift

    @property
    def k_fe(self) -> int:
        return self.x_shift.shape[0]

    @property
    def k_re(self) -> int:
        return self.z_shift.shape[0]

    def is_identity(self) -> bool:
        return bool(
            not self.x_shift.any()
            and (self.x_scale == 1).all()
            and self.y_shift == 0
            and self.y_scale == 1
            and not self.z_shift.any()
            and (self.z_scale == 1).all()
            and (self.vc_scale == 1).all()
            and self.weight_scale == 1
            and not self.x_basis.any()
        )

    # -- the rows ----------------------------------------------------------------------

    def with_weights(self, weights: np.ndarray | None) -> Standardization:
        """This map with :attr:`weight_span` widened by ``weights`` (``self`` when it
        holds them already or there are none)."""
        return self.with_span(widened(self.weight_span, log2_range(weights)))

    def with_span(self, span: tuple[float, float] | None) -> Standardization:
        """This map with :attr:`weight_span` ``span`` (``self`` when it holds it)."""
        return self if span == self.weight_span else replace(self, weight_span=span)

    def weights_in_statistics(
        self, weights: np.ndarray | None, name: str | None = None
    ) -> np.ndarray | None:
        """The weights the statistics are sums of, ``w / s_w`` (exact: ``s_w`` is a
        power of two); ``weights`` themselves when ``s_w`` is 1 or there are none.
        ``name``: the weights column, for the error.

        Raises
        ------
        DataError
            The weights' own scale (:func:`weight_scale`, from their first rows) is more
            than one step from ``s_w``: rows (a later partition, an ``update`` batch)
            whose weights are in another unit than those the map was chosen from, whose
            statistics would leave float64's range.  (One step is taken: weights then
            within ``2^±(3 WEIGHT_STEP_LOG2 / 2)`` of ``s_w``, where the statistics hold.)
            Where the map holds the span of its rows' weights (:attr:`weight_span`),
            such rows are refused as a fit of all the rows refuses them
            (:func:`check_weights_range` of both spans: more than a step apart, they are
            wider than :data:`WEIGHT_SPAN_LOG2`).
        """
        if weights is None:
            return weights
        own = weight_scale(weights)
        if abs(np.log2(own) - np.log2(self.weight_scale)) > WEIGHT_STEP_LOG2:
            check_weights_range(name, widened(self.weight_span, log2_range(weights)))
            raise weights_unit_error(
                name,
                "these rows' weights are in another unit than those the statistics' map "
                f"was chosen from: scale 2^{np.log2(own):.0f} against "
                f"2^{np.log2(self.weight_scale):.0f}, geometric means about a factor "
                f"2^{np.log2(own / self.weight_scale):.0f} apart",
            )
        if self.weight_scale == 1.0:
            return weights
        return np.asarray(weights, dtype=np.float64) / self.weight_scale

    def weight_ratio(self, target: Standardization) -> float:
        """``ρ = s_w / s_w,target`` (a power of four): statistics in this map are sums of
        ``w / s_w``, ``1/ρ`` times those in ``target``'s."""
        return self.weight_scale / target.weight_scale

    def conversion_to(
        self, target: Standardization, vc_widths=(), weights: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(M_x (k × k), M_z (r × r))`` taking columns in this map to ``target``'s:
        ``[X̃ ỹ]_target = [X̃ ỹ] M_x`` and ``Z̃_target = Z̃ M_z`` (``vc_widths``: the
        slots of each variance component, whose columns take its scale's ratio).

        Column ``v`` becomes ``a ṽ + b·1`` with ``a = s/s_t`` (a power of two) and
        ``b = (c − c_t)/s_t``; the ones come from the intercept column, which both maps
        must share (:class:`CheckpointError` otherwise).

        Maps of different weight scales (``ρ = s_w/s_w,target ≠ 1``, :meth:`weight_ratio`)
        are converted only with ``weights``: every sum of products of two columns is
        linear in the weights, so both matrices are then ``√ρ`` (a power of two: exact)
        times the map's, and the caller converts what is linear in the weights alone:
        the column sums ``Σ w̃ [X y 1]`` times ``ρ`` (``√ρ M_x'`` on ``[X y]``) and
        ``Σ log w̃`` plus ``n log ρ`` (:meth:`~dmixed.stats.packed.PackedLayout.
        convert_global`).  Without it they are refused (:class:`CheckpointError`).
        """
        if self.weight_scale != target.weight_scale and not weights:
            raise CheckpointError(
                "statistics whose prior weights are in different units cannot be added "
                f"(weights scaled by 2^{np.log2(self.weight_scale):.0f} vs "
                f"2^{np.log2(target.weight_scale):.0f}, chosen from the first rows of each "
                "part: their weights' geometric means differ by more than a factor "
                f"2^{WEIGHT_STEP_LOG2 // 2} or straddle such a factor); give the weights in "
                "one unit, e.g. divided by a constant, which changes only the reported scale"
            )
        if (self.x_intercept, self.z_intercept) != (target.x_intercept, target.z_intercept):
            raise CheckpointError(
                "statistics whose column maps have different intercept columns cannot be "
                f"added (exog: {self.x_intercept} vs {target.x_intercept}, exog_re: "
                f"{self.z_intercept} vs {target.z_intercept})"
            )
        if not all(map(np.array_equal, self.references(), target.references())):
            raise CheckpointError(
                "statistics whose integer columns were read about different references "
                "cannot be added (a spec saved with other references, or none)"
            )
        if not np.array_equal(self.basis(), target.basis()):
            raise CheckpointError(
                "statistics whose columns were read about different centres cannot be "
                "added (a spec saved with other centres, or none)"
            )
        cx = np.append(self.x_shift, self.y_shift)
        sx = np.append(self.x_scale, self.y_scale)
        tcx = np.append(target.x_shift, target.y_shift)
        tsx = np.append(target.x_scale, target.y_scale)
        if (
            self.x_ones.size
            and target.x_ones.size
            and not np.array_equal(self.x_ones, target.x_ones)
        ):
            raise CheckpointError(
                "statistics whose responses were shifted by different columns that make "
                "the constant cannot be added (a spec saved with another design)"
            )
        # the constant in this map's columns (X̃ ã = 1), from either map's weights (one
        # design: statistics saved before the response was shifted there hold none)
        made = self.x_ones if self.x_ones.size else target.x_ones
        ones = self.x_scale * made if made.size == self.k_fe else None
        m_x = _affine(sx / tsx, (cx - tcx) / tsx, self.x_intercept, ones)
        m_zq = _affine(
            self.z_scale / target.z_scale,
            (self.z_shift - target.z_shift) / target.z_scale,
            self.z_intercept,
        )
        ratio = self.slot_scales(vc_widths) / target.slot_scales(vc_widths)
        q = m_zq.shape[0]
        m_z = np.eye(q + ratio.size)
        m_z[:q, :q] = m_zq
        m_z[q:, q:] = np.diag(ratio)
        root = float(np.sqrt(self.weight_ratio(target)))  # a power of two: exact
        if root != 1.0:
            m_x, m_z = root * m_x, root * m_z
        return m_x, m_z

    def same_map(self, x_j: int, z_a: int) -> bool:
        """Whether X column ``x_j`` and Z column ``z_a`` are mapped alike (a Z column
        equal to an X column then gives the same transformed column)."""
        return bool(
            self.x_shift[x_j] == self.z_shift[z_a] and self.x_scale[x_j] == self.z_scale[z_a]
        )

    # -- the map of the estimates ------------------------------------------------------

    def in_weights_unit(self) -> Standardization:
        """This map for the model whose weights are those summed, ``w / s_w``: its
        ``σ²`` is ``σ²/s_w`` and its relative covariances ``s_w`` times the model's, of
        the size of the statistics' whatever the weights' unit (for coordinates an
        optimizer works in); ``self`` when ``s_w`` is 1."""
        return self if self.weight_scale == 1.0 else replace(self, weight_scale=1.0)

    @property
    def weight_root(self) -> float:
        """``√s_w`` (a power of two): every column's estimate scale is its column scale
        times it (see the module)."""
        return float(np.sqrt(self.weight_scale))

    @property
    def sigma_scale(self) -> float:
        """``σ / σ̃ = s_y √s_w``: ``σ² = s_y² s_w σ̃²``."""
        return self.y_scale if self.weight_scale == 1.0 else self.y_scale * self.weight_root

    def psi_matrix(self) -> np.ndarray:
        """``√s_w A`` (q × q): ``Ψ̃* = (√s_w A) Ψ* (√s_w A)'`` (:meth:`re_matrix` with
        the weights' scale)."""
        a = self.re_matrix()
        return a if self.weight_scale == 1.0 else self.weight_root * a

    def psi_scale_matrix(self) -> np.ndarray:
        """``√s_w S_z``: the scale part of :meth:`psi_matrix` (keeps Ψ*'s zero pattern)."""
        s = self.re_scale_matrix()
        return s if self.weight_scale == 1.0 else self.weight_root * s

    def tau_root_scales(self, k_vc: int) -> np.ndarray:
        """``√s_w s_l`` of each of ``k_vc`` components: ``τ̃*_l = s_w s_l² τ*_l``."""
        s = self.vc_scales(k_vc)
        return s if self.weight_scale == 1.0 else self.weight_root * s

    def fe_matrix(self) -> np.ndarray:
        """``T`` (p × p) with ``X = X̃ T``; with a design basis (:attr:`x_basis`,
        ``X = X_d D``), ``T_d D`` where ``X_d = X̃ T_d``."""
        t = np.diag(self.x_scale)
        if self.x_intercept >= 0:
            t[self.x_intercept, :] += self.model_x_shift()
        if self.x_basis.any():  # T_d (I + e_0 r' + B) = (T_d + e_0 r') + T_d B
            t_d = np.diag(self.x_scale)
            if self.x_intercept >= 0:
                t_d[self.x_intercept, :] += self.x_shift
            t = t + t_d @ self.x_basis
        return t

    def re_matrix(self) -> np.ndarray:
        """``A`` (q × q) with ``Z = Z̃ A``: ``Ψ̃* = A Ψ* A'``."""
        a = np.diag(self.z_scale)
        if self.z_intercept >= 0:
            a[self.z_intercept, :] += self.model_z_shift()
        return a

    def re_scale_matrix(self) -> np.ndarray:
        """``S_z`` (q × q): the scale part of :meth:`re_matrix`, which keeps any zero
        pattern of Ψ* (the shift part does not)."""
        return np.diag(self.z_scale)

    def beta_from_std(self, beta_std: np.ndarray) -> np.ndarray:
        """``β = T⁻¹ (s_y β̃ + c_y e_0)``."""
        rhs = self.beta_rhs(beta_std)
        return np.linalg.solve(self.fe_matrix(), rhs) if rhs.size else rhs

    def beta_rhs(self, beta_std: np.ndarray) -> np.ndarray:
        """``T β = s_y β̃ + c_y e_0``: what :meth:`beta_from_std` solves with ``T``
        (:meth:`fe_matrix`)."""
        rhs = self.y_scale * np.asarray(beta_std, dtype=np.float64)
        if self.x_intercept >= 0:
            rhs[self.x_intercept] += self.y_shift  # a new array: the product's
        elif self.y_shift != 0.0:
            ones = self.y_ones()
            if ones is not None:
                rhs += self.y_shift * ones
        return rhs

    def llf_offset(self, n: int, reml: bool) -> float:
        """``ℓ − ℓ̃ = −f log s_y − [REML] log|det T|`` (``f = n`` or ``n − p``)."""
        p = self.k_fe
        fac = n - p if reml else n
        out = -fac * np.log(self.y_scale)
        if reml:
            out -= float(np.add.reduce(np.log(self.x_scale)))  # np.sum's, without its wrapper
        return float(out)

    def a_inv_from_std(self, a_inv_std: np.ndarray) -> np.ndarray:
        """``(X'V*⁻¹X)⁻¹ = T⁻¹ (X̃'V*⁻¹X̃)⁻¹ T⁻ᵀ / s_w``."""
        if a_inv_std.size == 0:
            return a_inv_std
        t_inv = np.linalg.inv(self.fe_matrix())
        out = t_inv @ a_inv_std @ t_inv.T
        if self.weight_scale != 1.0:  # Ṽ* = s_w V*
            out = out / self.weight_scale
        return 0.5 * (out + out.T)

    def blups_from_std(
        self, blup: np.ndarray, cond: np.ndarray, vc_widths=()
    ) -> tuple[np.ndarray, np.ndarray]:
        """BLUPs ``b = s_y A⁻¹ b̃`` (G, r) and their covariances relative to σ²,
        ``A⁻¹ C̃ A⁻ᵀ`` (G, r, r), padded arrays or both ragged
        (:class:`~dmixed.stats.blup_cov.RaggedBlup`, ``RaggedCov``); a
        variance-component slot's ``b = s_y b̃ / s_l``.  In the estimate scales (the
        module: ``s_y``, ``A``, ``s_l`` times ``√s_w``), which leave ``b`` as it is and
        divide the relative covariances by ``s_w``."""
        q = self.k_re
        a = self.psi_matrix()
        slots = self.slot_scales(vc_widths)
        if self.weight_scale != 1.0:
            slots = self.weight_root * slots
        y_scale = self.sigma_scale
        if isinstance(blup, RaggedBlup):  # variance components held structured
            inv = np.linalg.inv(a)
            return blup.transformed(inv, slots, y_scale), cond.transformed(inv, slots)
        if np.array_equal(a, np.eye(q)) and np.all(slots == 1.0):
            return (blup if y_scale == 1.0 else y_scale * blup), cond
        inv = np.linalg.inv(a)
        b = np.array(blup, dtype=np.float64)
        b[:, :q] = blup[:, :q] @ inv.T
        b[:, q:] = blup[:, q:] / slots
        c = np.array(cond, dtype=np.float64)
        c[:, :q, :] = np.matmul(inv, cond[:, :q, :])  # rows of the exog_re block
        c[:, :, :q] = np.matmul(c[:, :, :q], inv.T)  # then its columns
        c[:, q:, :] /= slots[:, None]
        c[:, :, q:] /= slots
        return y_scale * b, c

    # -- saved form ----------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "x_shift": self.x_shift.tolist(),
            "x_scale": self.x_scale.tolist(),
            "y_shift": self.y_shift,
            "y_scale": self.y_scale,
            "z_shift": self.z_shift.tolist(),
            "z_scale": self.z_scale.tolist(),
            "x_intercept": self.x_intercept,
            "z_intercept": self.z_intercept,
            "vc_scale": self.vc_scale.tolist(),
            # (absent without references: the saved form of older versions)
            **({"x_ref": self.x_ref.tolist()} if self.x_ref.any() else {}),
            **({"z_ref": self.z_ref.tolist()} if self.z_ref.any() else {}),
            # (absent when 1: the saved form of older versions, which could not read it)
            **({"weight_scale": self.weight_scale} if self.weight_scale != 1.0 else {}),
            **({"x_basis": self.x_basis.tolist()} if self.x_basis.any() else {}),
            **({"x_ones": self.x_ones.tolist()} if self.x_ones.any() else {}),
        }

    @classmethod
    def from_json(cls, data: dict, p: int, q: int) -> Standardization:
        """The map saved by :meth:`to_json`, checked against ``p`` and ``q``.

        Raises
        ------
        CheckpointError
            A missing or malformed entry.
        """
        try:
            out = cls(
                np.asarray(data["x_shift"], dtype=np.float64).reshape(p),
                np.asarray(data["x_scale"], dtype=np.float64).reshape(p),
                float(data["y_shift"]),
                float(data["y_scale"]),
                np.asarray(data["z_shift"], dtype=np.float64).reshape(q),
                np.asarray(data["z_scale"], dtype=np.float64).reshape(q),
                int(data["x_intercept"]),
                int(data["z_intercept"]),
                np.asarray(data.get("vc_scale", []), dtype=np.float64).reshape(-1),
                x_ref=np.asarray(data.get("x_ref", []), dtype=np.float64).reshape(-1),
                z_ref=np.asarray(data.get("z_ref", []), dtype=np.float64).reshape(-1),
                weight_scale=float(data.get("weight_scale", 1.0)),
                x_basis=np.asarray(data.get("x_basis", []), dtype=np.float64).reshape(
                    (p, p) if "x_basis" in data else (0, 0)
                ),
                x_ones=np.asarray(data.get("x_ones", []), dtype=np.float64).reshape(
                    p if "x_ones" in data else 0
                ),
            )
            if out.x_ref.size not in (0, p) or out.z_ref.size not in (0, q):
                raise ValueError("references of the wrong length")
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"malformed column standardization: {exc}") from exc
        scales = np.concatenate(
            [out.x_scale, out.z_scale, [out.y_scale, out.weight_scale], out.vc_scale]
        )
        if not np.all(np.isfinite(out.x_basis)) or np.diagonal(out.x_basis).any():
            raise CheckpointError("malformed column standardization: a basis must be finite")
        if not np.all(np.isfinite(np.concatenate([out.x_ref, out.z_ref]))):
            raise CheckpointError("malformed column standardization: references must be finite")
        if not (np.all(np.isfinite(scales)) and np.all(scales > 0)):
            raise CheckpointError("malformed column standardization: scales must be positive")
        exponent = np.log2(out.weight_scale)
        if exponent != np.round(exponent) or exponent % 2:
            raise CheckpointError(
                "malformed column standardization: the weights' scale must be a power of four"
            )
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Standardization):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(repr(self.to_json()))


def _affine(
    a: np.ndarray, b: np.ndarray, intercept: int, ones: np.ndarray | None = None
) -> np.ndarray:
    """``M`` with ``(V M)_j = a_j V_j + b_j V_intercept``; without an intercept, the
    last column's (the response's) ``b`` on the columns ``ones`` that make the constant
    in this map's columns (``X̃ ã = 1``, :meth:`Standardization.y_ones`)."""
    m = np.diag(a)
    if intercept >= 0:
        b = b.copy()
        b[intercept] = 0.0
        m[intercept, :] += b
    elif ones is not None and ones.size == a.size - 1 and not np.any(b[:-1] != 0):
        # ỹ_t = a ỹ + b·1, and 1 = X̃ ã in this map's columns
        m[:-1, -1] += b[-1] * ones
    elif np.any(b != 0):
        raise CheckpointError("shifted columns without an intercept column")
    return m


def psi_map_matrix(a: np.ndarray, k_vc: int) -> np.ndarray:
    """``M`` with ``vech_lt(A Ψ A') = M vech_lt(Ψ)`` (then the ``τ`` entries unchanged).

    ``vech_lt`` in the Hessian's convention: an off-diagonal entry ``θ_j`` stands for
    both ``Ψ_ab`` and ``Ψ_ba``, so column ``j`` is ``vech_lt(A E_j A')`` with
    ``E_j = e_a e_b' + e_b e_a'`` (``e_a e_a'`` on the diagonal).
    """
    q = a.shape[0]
    rows, cols = tril_indices(q)
    m = rows.size
    out = np.eye(m + k_vc)
    for j, (ra, cb) in enumerate(zip(rows, cols, strict=True)):
        e = np.zeros((q, q))
        e[ra, cb] = 1.0
        e[cb, ra] = 1.0
        with np.errstate(over="ignore", invalid="ignore"):  # inf for units near 1e±300
            out[:m, j] = (a @ e @ a.T)[rows, cols]
    return out
