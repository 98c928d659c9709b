# The signatures of the C extension dmixed/kernels/c_sums.c (its docstrings say what
# each fills); dmixed.kernels.native loads it.
from typing import Any

def dense2_fill(zz: Any, zxy: Any, k: int, g: int, rows: Any, fa: Any, /) -> None: ...
def dense2_first(
    rows: Any,
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
    fa: Any,
    rows: Any,
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
def dense2_moment_c(rows: Any, k: int, g: int, c: Any, /) -> None: ...
