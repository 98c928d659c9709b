# The signatures of the C extension dmixed/kernels/c_sums.c (its docstrings say what
# each fills); dmixed.kernels.native loads it.
from collections.abc import Sequence
from typing import Any

# the version of the entry points' arguments (C_SUMS_VERSION; native.VERSION)
VERSION: int

def dense1_step(
    u: Any, f: Any, inv_u: Any, k: int, g: int, b: float, h: Any, s_i: Any, sums: Any, /
) -> float: ...
def within_sums(
    codes: Any, columns: Sequence[Any], centres: Any, n_groups: int, out: Any, /
) -> None: ...
def dense2_first(
    zz: Any,
    zxy: Any,
    k: int,
    g: int,
    c0: float,
    c1: float,
    c2: float,
    c3: float,
    c4: float,
    inv_d: Any,
    sums: Any,
    /,
) -> float: ...
def dense2_residual(
    zz: Any,
    zxy: Any,
    inv_d: Any,
    k: int,
    g: int,
    b00: float,
    b01: float,
    b11: float,
    w: Any,
    out: Any,
    va: Any,
    /,
) -> None: ...
def dense2_gram(
    zz: Any, zxy: Any, inv_d: Any, k: int, g: int, b00: float, b01: float, b11: float, gram: Any, /
) -> None: ...
def dense2_moment_c(rows: Any, k: int, g: int, c: Any, /) -> None: ...
def term_sums(
    codes: Any,
    columns: Sequence[Any],
    terms: Sequence[tuple[int, int]],
    n_groups: int,
    table: Any,
    /,
) -> None: ...
def constant_within(codes: Any, columns: Sequence[Any], n_groups: int, /) -> bool: ...
def profiled_hessian(
    va: Any,
    c: Any,
    a: Any,
    b: Any,
    a_inv: Any,
    beta: Any,
    index: Any,
    width: int,
    p: int,
    m: int,
    q0: float,
    fac: float,
    reml: bool,
    hess: Any,
    prof: Any,
    tr_ss: Any,
    /,
) -> bool: ...
def gathered_sums(flat: Any, index: Any, width: int, sums: Any, /) -> None: ...
def lean_evaluate(
    zz: Any,
    zxy: Any,
    k: int,
    g: int,
    l00: float,
    l10: float,
    l11: float,
    xyxy: Any,
    abs_xyxy: Any,
    max_xyxy: float,
    score_at: Any,
    fac: float,
    const: float,
    limit: float,
    pivot_limit: float,
    reml: bool,
    inv_d: Any,
    rows: Any,
    va: Any,
    m: Any,
    t: Any,
    a_inv: Any,
    beta: Any,
    scalars: Any,
    /,
) -> int: ...
def block_terms(
    hess: Any,
    g0: float,
    g1: float,
    g2: float,
    x0: float,
    big_l: float,
    d0: float,
    x1: float,
    g_v: Any,
    h_v: Any,
    /,
) -> None: ...
