"""Compiled per-row sums of one product plan, generated for that plan.

:func:`term_kernel` writes, for the terms of a
:func:`~dmixed.kernels.rows.product_plan`, a small Python module whose one function adds
every row's terms into a row-major table of groups (``table[g, t] += term_t(row)``),
each term written out (``1``, ``s_u[i]`` or ``s_u[i] * s_v[i]``), and compiles it with
numba (``cache=True``: the machine code is kept on disk next to the generated module and
loaded by later processes).  With the terms fixed when the kernel is compiled, a row's
updates are independent stores into one cache line of the table; read from arrays of
term kinds at run time they are not, and the pass is 3× slower (benchmarks/RESULTS.md,
ninth session).

With many groups the table is far larger than the caches and every row's table row is a
miss to memory: the loop asks for the table row of the row :data:`PREFETCH_DISTANCE`
ahead (:func:`prefetch_row`, a hint that changes no value), so that many misses are in
flight at once instead of the few the processor's reorder window holds.  The hint is a
read into the second-level cache (``prefetcht1``), not a write into the first: the
second level tracks many more misses at once, and the row is in it when the loop gets
there (2.6× faster at 1M groups than the write hint 16 rows ahead; benchmarks/RESULTS.md,
twelfth session of 2026-12-02).

:func:`columns_kernel` is the same pass over a partition's raw columns (the design's
columns are those columns and ones), which also checks them finite and sums
``[X y]'[X y]`` on the way, so that no design matrix is built
(:meth:`~dmixed.kernels.term_table.TermTable.add_columns`).  Its loop counters are
unsigned: numba indexes an array with a signed counter that starts at a run-time offset
(``range(lo, hi)``) through a check for negative indices, which LLVM vectorized with
gathers, one lane at a time, in the chunk's sums; an unsigned index has no such check,
and the same sums (the same vector lanes, added in the same order) load contiguously.

This module imports numba at its top; :mod:`~dmixed.kernels.term_table` imports it only
when it first runs a compiled pass, never ``import dmixed``.  The generated modules
live in :func:`cache_directory`, named by a digest of the plan and of this module's
:data:`KERNEL_VERSION`.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
import pickle
import sys
import tempfile

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .compiled import CACHE_LINE, checked_edges

#: changes whenever the generated source changes (old modules are then left unused)
KERNEL_VERSION = 7
#: how many rows ahead the generated loop prefetches its table row (64–128 measured
#: alike from 200k to 2M groups, 48 a little slower: benchmarks/RESULTS.md, twelfth
#: session of 2026-12-02)
PREFETCH_DISTANCE = 64
#: rows of a chunk of :func:`columns_kernel` (checked finite, then summed): a few
#: columns of it stay in the first-level cache between its two loops
COLUMNS_CHUNK = 1024
#: environment variable naming the directory of the generated modules
CACHE_ENV = "DMIXED_KERNEL_CACHE"

_LOADED: dict[tuple, object] = {}


def cache_directory() -> str:
    """Where the generated modules (and numba's cache of them) are kept:
    ``$DMIXED_KERNEL_CACHE``, else ``~/.cache/dmixed/kernels``, else (not writable) a
    directory of this user under the system's temporary directory."""
    wanted = os.environ.get(CACHE_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "dmixed", "kernels"
    )
    for path in (wanted, os.path.join(tempfile.gettempdir(), f"dmixed-kernels-{os.getuid()}")):
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    raise OSError(f"no writable directory for compiled kernels (tried {wanted})")


def kernel_source(terms: tuple) -> str:
    """The generated module's source for ``terms`` (``("count",)``, ``("col", s)``,
    ``("prod", s, t)``, with ``s, t`` indexing the kernel's source arguments; a last
    ``("zero",)``: the table's column of zeros, nothing added), one a table column."""
    n_src = 1 + max((u for term in terms for u in _sources(term)), default=-1)
    lines = _module_head(
        ["codes", "table"] + [f"s{u}" for u in range(n_src)], bool(row_prefetches(len(terms)))
    )
    lines += ["    n = codes.size", "    for i in range(n):"]
    lines += _row_updates(terms, [f"v{u} = s{u}[i]" for u in range(n_src)], " " * 8)
    return "\n".join(lines) + "\n"


def _sources(term: tuple) -> list[int]:
    """The source arguments a term reads: its indices, or for a term about the groups'
    shifts the sources its values name (``v3``)."""
    if term[0] in ("count", "col", "prod", "zero"):
        return list(term[1:])
    return [int(x[1:]) for x in term[1:] if isinstance(x, str) and x[:1] == "v" and x[1:].isdigit()]


def row_prefetches(width: int) -> tuple[int, ...]:
    """The entries between a table row's first and last whose cache lines the sweep
    asks for too (:func:`prefetch_entry`), for a table of ``width`` float64 entries a
    row that starts on a cache line (:data:`~dmixed.kernels.compiled.CACHE_LINE`):
    every 8th entry whose line, for some row, is neither the first entry's nor the
    last's (:func:`prefetch_row` asks for those two); empty for a row that never
    touches more than those two lines (a plain table of up to 10 entries, or 16)."""
    per_line = CACHE_LINE // 8
    starts = {(width * g) % per_line for g in range(per_line)}  # rows' first entry in a line
    out = []
    for c in range(per_line, width - 1, per_line):
        if any((o + c) // per_line not in (0, (o + width - 1) // per_line) for o in starts):
            out.append(c)
    return tuple(out)


def _module_head(args: list[str], entries: bool = False) -> list[str]:
    """A generated module's lines up to its function's ``def`` line (``entries``: its
    loop asks for a row's middle lines too, :func:`prefetch_entry`)."""
    return [
        "import numba",
        "",
        "from dmixed.kernels.term_jit import prefetch_entry, prefetch_row"
        if entries
        else "from dmixed.kernels.term_jit import prefetch_row",
        "",
        "",
        "@numba.njit(cache=True, nogil=True, error_model='numpy')",
        f"def accumulate({', '.join(args)}):  # pragma: no cover - compiled",
    ]


def _row_updates(
    terms: tuple,
    values: list[str],
    pad: str,
    ahead: str = str(PREFETCH_DISTANCE),
    less: str = "",
) -> list[str]:
    """The loop body adding row ``i``'s ``terms`` (over ``v0, v1, …``, set by
    ``values``) into its group's table row (``codes[i]``, followed by ``less``: the
    row of a key less the base), the table row :data:`PREFETCH_DISTANCE` rows ahead
    (``ahead``: that distance spelled in the type of ``i``) asked for first.

    Terms about a shift of each group's own (:class:`~dmixed.kernels.term_table.ShiftTerms`)
    come after the others, their values named as the kernel reads them (``c3[i]``,
    ``v2``): ``("first", x, c)`` keeps ``x`` of the group's first row (where its
    count, table column ``c``, is still 0), before any term is added; ``("dsum", x,
    f)`` adds ``x − row[f]`` (``f`` the column of the kept value), ``("dprod", x, f,
    y, h)`` the product of two such differences, ``("dcross", x, f, y)`` one times
    ``y``; for weighted rows each but ``"first"`` carries one more element, the value
    ``s`` of ``√w`` (``v1``): ``"dsum"`` and ``"dprod"`` times ``s * s``, ``"dcross"``
    (whose ``y`` is scaled by ``√w``) times ``s``; ``("zero",)``, last, the table's
    column of zeros (nothing added; it counts in the row's width)."""
    ahead_row = f"codes[i + {ahead}]{less}"
    middle = row_prefetches(len(terms))
    lines = [
        f"{pad}if i + {ahead} < n:",
        f"{pad}    prefetch_row(table, {ahead_row})",
        *[f"{pad}    prefetch_entry(table, {ahead_row}, {c})" for c in middle],
        f"{pad}row = table[codes[i]{less}]",
        *[pad + v for v in values],
    ]
    # the kept values by a select, not a branch: a group's first row among many is
    # taken at random, which a branch would mispredict; each difference made once
    firsts = [(t, term) for t, term in enumerate(terms) if term[0] == "first"]
    if firsts:
        lines.append(f"{pad}fresh = row[{firsts[0][1][2]}] == 0.0")
    kept: dict[int, str] = {}
    for t, term in firsts:
        name = kept[t] = f"k{len(kept)}"
        lines.append(f"{pad}{name} = {term[1]} if fresh else row[{t}]")
        lines.append(f"{pad}row[{t}] = {name}")
        lines.append(f"{pad}d{name} = {term[1]} - {name}")
    for t, term in enumerate(terms):
        if term[0] in ("first", "zero"):
            continue
        if term[0] == "count":
            value = "1.0"
        elif term[0] == "col":
            value = f"v{term[1]}"
        elif term[0] == "prod":
            value = f"v{term[1]} * v{term[2]}"
        elif term[0] == "dsum":
            value = f"d{kept[term[2]]}"
            if len(term) > 3:  # weighted: w δ
                value = f"{term[3]} * {term[3]} * {value}"
        elif term[0] == "dprod":
            value = f"d{kept[term[2]]} * d{kept[term[4]]}"
            if len(term) > 5:  # weighted: (w δ) δ
                value = f"{term[5]} * {term[5]} * d{kept[term[2]]} * d{kept[term[4]]}"
        else:  # "dcross"
            value = f"d{kept[term[2]]} * {term[3]}"
            if len(term) > 4:  # weighted: (√w δ)(√w a)
                value = f"{term[4]} * d{kept[term[2]]} * {term[3]}"
        lines.append(f"{pad}row[{t}] += {value}")
    return lines


def term_kernel(terms: tuple):
    """The compiled ``accumulate(codes, table, s0, s1, …)`` of ``terms`` (generated and
    imported once per process; compiled on its first call, or loaded from numba's
    cache)."""
    return _generated(terms, kernel_source)


def columns_kernel_source(key: tuple) -> str:
    """The generated module's source for :func:`columns_kernel` of ``key = (terms,
    raws, gram, n_raw)``: ``terms`` as :func:`kernel_source`'s over the kernel's sources
    ``u``, each the raw column ``raws[u]`` less ``shift[u]``; ``gram`` the source of
    every column of ``[X y]`` (−1: a column of ones); ``n_raw`` raw columns, all checked
    finite."""
    terms, raws, gram, n_raw = key
    pairs = [(a, b) for a in range(len(gram)) for b in range(a, len(gram))]
    sums = [(a, b) for a, b in pairs if gram[a] >= 0 or gram[b] >= 0]

    def product(a: int, b: int) -> str:
        u, v = gram[a], gram[b]
        return f"v{v}" if u < 0 else f"v{u}" if v < 0 else f"v{u} * v{v}"

    values = [f"v{u} = c{raw}[i] - h{u}" for u, raw in enumerate(raws)]
    raw_args = [f"c{j}" for j in range(n_raw)]
    entries = bool(row_prefetches(len(terms)))
    lines = [
        *_module_head(["codes", "table", "gram", "shift", *raw_args], entries)[:3],
        "",
        "",
        # the chunk's check and gram may be summed in any order (vectorized): their
        # sums are the gram to rounding, and a value that is not finite makes ``bad``
        # NaN whatever the order; no other flag (no contraction, no NaN assumed away)
        "@numba.njit(cache=True, nogil=True, error_model='numpy', fastmath={'reassoc'})",
        f"def chunk_sums(lo, hi, codes, base, rows, gram, shift, {', '.join(raw_args)}):",
        *[f"    h{u} = shift[{u}]" for u in range(len(raws))],
        "    bad = 0.0",
        "    top = numba.uint64(0)",
        *[f"    g{a}_{b} = 0.0" for a, b in sums],
        "    for i in range(lo, hi):",
        # a negative code is a huge unsigned one: one maximum checks both bounds
        "        top = max(top, numba.uint64(codes[i] - base))",
        "        bad += " + (" + ".join(f"c{j}[i] * 0.0" for j in range(n_raw)) or "0.0"),
        *[f"        {v}" for v in values],
        *[f"        g{a}_{b} += {product(a, b)}" for a, b in sums],
        "    if top >= rows:",
        "        raise ValueError('codes must be in 0 … (rows of the table) − 1')",
        "    if bad != bad:",
        "        return False",
        *[f"    gram[{a}, {b}] += g{a}_{b}" for a, b in sums],
        "    return True",
        "",
        "",
        *_module_head(["codes", "table", "gram", "shift", "base", *raw_args], entries)[4:],
        "    n = numba.uint64(codes.size)",
        "    rows = numba.uint64(table.shape[0])",
        *[f"    h{u} = shift[{u}]" for u in range(len(raws))],
        "    lo = numba.uint64(0)",
        "    while lo < n:",
        f"        hi = min(lo + numba.uint64({COLUMNS_CHUNK}), n)",
        "        if not chunk_sums(lo, hi, codes, base, rows, gram, shift, "
        f"{', '.join(raw_args)}):",
        "            return lo",
        "        for i in range(lo, hi):",
        *_row_updates(terms, values, " " * 12, f"numba.uint64({PREFETCH_DISTANCE})", " - base"),
        "        lo = hi",
        "    return n",
    ]
    return "\n".join(lines) + "\n"


def columns_kernel(terms: tuple, raws: tuple, gram: tuple, n_raw: int):
    """The compiled ``accumulate(codes, table, gram, shift, base, c0, c1, …)`` of one
    sweep over raw columns (:func:`columns_kernel_source`; generated and imported once
    per process, compiled on its first call or loaded from numba's cache).  Row ``i``
    goes to table row ``codes[i] − base`` (int64): codes as they are with ``base`` 0,
    or the rows' int64 group keys with the key of table row 0, so that no array of
    codes is made.

    The rows go in chunks of :data:`COLUMNS_CHUNK`: each chunk's raw values are first
    checked finite (``c · 0`` is 0 for a finite ``c``, NaN otherwise) while the
    chunk's ``[X y]'[X y]`` (upper triangle, the entries with a column of ones
    included, ones × ones left to the caller) is summed apart and then added into
    ``gram``; then its rows' terms are added into ``table`` (as :func:`term_kernel`'s),
    the chunk read again from the cache.  It returns the rows summed: ``n``, or the
    first row of the first chunk holding a value that is not finite (nothing of that
    chunk or after it summed).
    """
    return _generated((terms, raws, gram, n_raw), columns_kernel_source)


def _generated(key: tuple, make_source):
    """The ``accumulate`` function of the module ``make_source(key)`` (see
    :func:`term_kernel`)."""
    kernel = _LOADED.get((make_source.__name__, key))
    if kernel is not None:
        return kernel
    source = make_source(key)
    digest = hashlib.sha256(f"{KERNEL_VERSION}\n{source}".encode()).hexdigest()[:20]
    name = f"dmixed_terms_{digest}"
    path = os.path.join(cache_directory(), name + ".py")
    if not _same_text(path, source):  # unchanged files keep numba's cache valid
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(source)
        os.replace(tmp, path)  # atomic: concurrent processes write the same text
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always loads
        raise ImportError(f"cannot load the generated kernel {path}")
    module = importlib.util.module_from_spec(spec)
    # numba's cache finds the module's globals by its name when it loads the code
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _drop_unreadable_cache(os.path.dirname(path), name)  # the code unpickles by module name
    kernel = _LOADED[make_source.__name__, key] = module.accumulate
    return kernel


def _prefetch(context, builder, aryty, table, row, cols) -> None:
    """The ``llvm.prefetch`` of entries ``cols`` (functions of the row's width) of
    ``table``'s row ``row`` (read, locality 2, data: ``prefetcht1`` on x86)."""
    ary = context.make_array(aryty)(context, builder, table)
    i8p = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
    for col in cols(builder.extract_value(ary.shape, 1)):
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [row, col], wraparound=False)
        # read, locality 2 (the second-level cache and beyond), data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(2), i32(1)])


def _row_type(table, row) -> bool:
    """Whether an intrinsic's ``table`` and ``row`` are a 2-d C-contiguous array and
    an integer."""
    return (
        isinstance(table, types.Array)
        and table.ndim == 2
        and table.layout == "C"
        and isinstance(row, types.Integer)
    )


@intrinsic
def prefetch_row(typingctx, table, row):
    """``prefetch_row(table, g)`` in compiled code: asks the processor to bring row ``g``
    of the 2-d C-contiguous ``table`` (its first and last entries' cache lines) into the
    second-level cache (LLVM's ``llvm.prefetch``, read, locality 2, data: ``prefetcht1``
    on x86; the write hint is ``prefetchw`` into the first level, whose few miss slots
    held the loop back, see the module).  A hint: it reads,
    writes and checks nothing (an index out of range is not an error here; the access
    that follows is where it would be).  A row of more than two lines has its middle
    ones asked for by :func:`prefetch_entry`."""
    if not _row_type(table, row):
        return None
    sig = types.void(table, row)

    def codegen(context, builder, signature, args):
        index = context.cast(builder, args[1], signature.args[1], types.intp)

        def cols(ncols):
            return (ir.Constant(ncols.type, 0), builder.sub(ncols, ir.Constant(ncols.type, 1)))

        _prefetch(context, builder, signature.args[0], args[0], index, cols)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def prefetch_entry(typingctx, table, row, col):
    """``prefetch_entry(table, g, c)`` in compiled code: :func:`prefetch_row`'s hint for
    the cache line of entry ``c`` of row ``g`` (a line in the middle of a long row,
    :func:`row_prefetches`)."""
    if not _row_type(table, row) or not isinstance(col, types.Integer):
        return None
    sig = types.void(table, row, col)

    def codegen(context, builder, signature, args):
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        entry = context.cast(builder, args[2], signature.args[2], types.intp)
        _prefetch(context, builder, signature.args[0], args[0], index, lambda ncols: (entry,))
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, nogil=True)
def expand_rows(table, rows, cols, scales, out):  # pragma: no cover - compiled
    """``out[i, c] = table[rows[i], cols[c]] · scales[c]``: packed rows from a table of
    terms in one pass (:meth:`~dmixed.kernels.term_table.TermRows.packed`)."""
    for i in range(rows.size):
        src = table[rows[i]]
        dst = out[i]
        for c in range(cols.size):
            dst[c] = src[cols[c]] * scales[c]


@numba.njit(cache=True, nogil=True)
def move_rows(table, rows, bucket, starts, spill, order):  # pragma: no cover - compiled
    """Rows ``rows`` (increasing) of ``table`` by bucket, each bucket's in the order of
    ``rows`` (:meth:`~dmixed.kernels.term_table.TermTable.split_rows`): bucket 0's
    moved forward to ``table[0 : starts[1]]`` (``rows[i] ≥`` its new place: the move
    never overwrites a row not yet read), the others' copied to ``spill[starts[b] −
    starts[1] …]``; one pass in row order (a permutation in place, cycle by cycle,
    misses the cache on every row).  ``order[j]``: the ``i`` of the row now at place
    ``j``, bucket after bucket (``argsort(bucket, kind="stable")``)."""
    n = rows.size
    fill = starts[:-1].copy()
    first = starts[1]
    for i in range(n):
        b = bucket[i]
        order[fill[b]] = i
        src = table[rows[i]]
        if b == 0:
            dst = table[fill[0]]
        else:
            dst = spill[fill[b] - first]
        fill[b] += 1
        if b == 0 and fill[0] - 1 == rows[i]:
            continue
        for c in range(src.size):
            dst[c] = src[c]


@numba.njit(cache=True, nogil=True)
def key_codes(keys, base, out):  # pragma: no cover - compiled
    """``out[i] = keys[i] − base`` (int64, wrapping on overflow) and the keys' ``(min,
    max)``, in one pass (:func:`~dmixed.kernels.term_table.key_codes`); with ``out``
    None the range alone (:func:`~dmixed.kernels.term_table.key_range`: numba compiles
    that call apart, the store pruned with its branch, as ``out`` is None by type);
    ``keys`` not empty."""
    lo = keys[0]
    hi = keys[0]
    for i in range(keys.size):
        k = keys[i]
        lo = min(lo, k)
        hi = max(hi, k)
        if out is not None:
            out[i] = k - base
    return lo, hi


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def copy_finite(src, dst):  # pragma: no cover - compiled
    """``dst[:] = src`` (float64, one size) and whether every value is finite, in one
    pass (:func:`~dmixed.kernels.term_table.held_columns`): ``c · 0`` is 0 for a finite
    ``c`` and NaN otherwise, so their sum, in any order, is NaN where one is not."""
    bad = 0.0
    for i in range(src.size):
        v = src[i]
        dst[i] = v
        bad += v * 0.0
    return bad == bad


@numba.njit(inline="always")
def _bucket(v, n, mask, power_of_two):  # pragma: no cover - compiled
    """``mix(v) mod n`` of uint64 ``v``, ``mix`` the 64-bit finalizer of splitmix64 (the
    one spelling of the hash of :func:`hash_buckets` and :func:`seen_buckets`)."""
    v ^= v >> np.uint64(30)
    v *= np.uint64(0xBF58476D1CE4E5B9)
    v ^= v >> np.uint64(27)
    v *= np.uint64(0x94D049BB133111EB)
    v ^= v >> np.uint64(31)
    return np.int64(v & mask) if power_of_two else np.int64(v % n)


@numba.njit(cache=True, nogil=True)
def hash_buckets(bits, n_buckets, out):  # pragma: no cover - compiled
    """``out[i] = mix(bits[i]) mod n_buckets`` of uint64 ``bits``, ``mix`` the 64-bit
    finalizer of splitmix64 (:func:`~dmixed.kernels.term_table.hash_buckets`)."""
    n = np.uint64(n_buckets)
    mask = n - np.uint64(1)
    power_of_two = (n & mask) == np.uint64(0)  # then the remainder is the low bits
    for i in range(bits.size):
        out[i] = _bucket(bits[i], n, mask, power_of_two)


@numba.njit(cache=True, nogil=True)
def seen_buckets(table, count_col, base, n_buckets, seen, bucket, sizes):  # pragma: no cover
    """The table rows whose count (column ``count_col``) is not zero, increasing, into
    ``seen[:m]``; the bucket of each one's key (row + ``base``, int64, wrapping) as
    :func:`hash_buckets` gives it for the key's bits, into ``bucket[:m]``; each bucket's
    rows added to ``sizes``; returns ``m``.  One pass over the count column
    (:meth:`~dmixed.kernels.term_table.TermTable.split_seen`)."""
    n = np.uint64(n_buckets)
    mask = n - np.uint64(1)
    power_of_two = (n & mask) == np.uint64(0)
    m = 0
    for r in range(table.shape[0]):
        if table[r, count_col] != 0.0:
            b = _bucket(np.uint64(np.int64(r) + base), n, mask, power_of_two)
            seen[m] = r
            bucket[m] = b
            sizes[b] += 1
            m += 1
    return m


@numba.njit(cache=True, nogil=True)
def split_seen_two(table, count_col, base, spill, seen0, seen1):  # pragma: no cover
    """:func:`seen_buckets` and :func:`move_rows` of two buckets in one pass over the
    table (:meth:`~dmixed.kernels.term_table.TermTable.split_seen`): every row whose
    count (column ``count_col``) is not zero, in increasing order, is moved forward
    to ``table[n0]`` where its key's bucket (row + ``base``, as :func:`hash_buckets`
    gives it) is 0 (``n0 ≤`` the row: no row not yet read is overwritten), else
    copied to ``spill[n1]``; its row goes to ``seen0[n0]`` or ``seen1[n1]``.  Returns
    ``(n0, n1)``.

    The bucket picks no branch: a key's bucket is a hash of it, as unpredictable as a
    coin, and a branch on it would be mispredicted every other row.  Each row is
    written to both places, ``table[n0]`` and ``spill[n1]`` (its row to both
    ``seen0[n0]`` and ``seen1[n1]``), and only its bucket's count advances: the other
    copy is overwritten by the next row of that bucket, or lies one row past the
    bucket's end (``table[n0]`` is then a row already read, or the row itself; ``spill``
    and the ``seen`` arrays hold as many rows as ``table``, so ``n1 ≤`` the row is in
    them, and ``spill``'s pages past ``spill[n1]`` are never touched)."""
    two = np.uint64(2)
    mask = np.uint64(1)
    width = table.shape[1]
    n0 = 0
    n1 = 0
    for r in range(table.shape[0]):
        if table[r, count_col] != 0.0:
            src = table[r]
            b = _bucket(np.uint64(np.int64(r) + base), two, mask, True)
            dst0 = table[n0]
            dst1 = spill[n1]
            for c in range(width):
                v = src[c]
                dst0[c] = v
                dst1[c] = v
            seen0[n0] = r
            seen1[n1] = r
            n0 += 1 - b
            n1 += b
    return n0, n1


@numba.njit(cache=True, nogil=True)
def bucket_sizes(base, n, n_buckets, sizes):  # pragma: no cover - compiled
    """Add to ``sizes[b]`` the keys ``base … base + n − 1`` (int64, wrapping) whose
    bucket (as :func:`hash_buckets` gives it) is ``b``: every table row's, seen or not,
    an upper bound of each bucket's rows seen, found without reading the table
    (:func:`split_seen_many`'s room per bucket)."""
    nb = np.uint64(n_buckets)
    mask = nb - np.uint64(1)
    power_of_two = (nb & mask) == np.uint64(0)
    for r in range(n):
        sizes[_bucket(np.uint64(np.int64(r) + base), nb, mask, power_of_two)] += 1


@numba.njit(cache=True, nogil=True)
def split_seen_many(
    table, count_col, base, n_buckets, spill, starts, fill, seen
):  # pragma: no cover
    """:func:`split_seen_two` of any number of buckets: :func:`seen_buckets` and
    :func:`move_rows` in one pass over the table, no pass over its count column
    first.  Every row whose count (column ``count_col``) is not zero, in increasing
    order, is moved forward to ``table[fill[0]]`` where its key's bucket (row + ``base``,
    as :func:`hash_buckets` gives it) is 0, else copied to ``spill[starts[b] − starts[1]
    + fill[b]]``; its row goes to ``seen[starts[b] + fill[b]]``; ``fill[b]`` (zeros on
    entry) counts bucket ``b``'s rows.  Returns ``fill``.

    ``starts`` (int64, ``n_buckets + 1``, from 0) are the edges of the buckets' regions,
    each as large as :func:`bucket_sizes` of the table's rows (every row's bucket, seen
    or not: no region overflows); ``seen`` holds ``starts[-1]`` rows, ``spill`` the
    regions of buckets 1 and up and one row more.  As in :func:`split_seen_two`, the
    bucket picks no branch: each row is written to ``table[fill[0]]`` (a row already
    read, or the row itself) and to a row of ``spill``, bucket 0's to its last row,
    which is no bucket's."""
    nb = np.uint64(n_buckets)
    mask = nb - np.uint64(1)
    power_of_two = (nb & mask) == np.uint64(0)
    width = table.shape[1]
    scratch = spill.shape[0] - 1
    for r in range(table.shape[0]):
        if table[r, count_col] != 0.0:
            b = _bucket(np.uint64(np.int64(r) + base), nb, mask, power_of_two)
            at = starts[b] + fill[b]
            dst0 = table[fill[0]]
            dst1 = spill[at - starts[1] if b else scratch]
            src = table[r]
            for c in range(width):
                v = src[c]
                dst0[c] = v
                dst1[c] = v
            seen[at] = r
            fill[b] += 1
    return fill


@numba.njit(cache=True, nogil=True)
def add_rows(out, rows, values):  # pragma: no cover - compiled
    """``out[rows[i]] += values[i]`` row by row (distinct ``rows``): the combine's adds
    by position (:func:`~dmixed.kernels.term_table.add_rows_into`)."""
    for i in range(rows.size):
        dst = out[rows[i]]
        src = values[i]
        for c in range(src.size):
            dst[c] += src[c]


@numba.njit(cache=True, nogil=True)
def merged_count(keys):  # pragma: no cover - compiled
    """Distinct keys of the runs ``keys`` (a tuple of int64 arrays, each strictly
    increasing), or −1 where a run is not strictly increasing
    (:func:`~dmixed.kernels.term_table.merge_term_rows`)."""
    n_runs = len(keys)
    for j in range(n_runs):
        run = keys[j]
        for i in range(1, run.size):
            if run[i] <= run[i - 1]:
                return -1
    at = np.zeros(n_runs, dtype=np.int64)
    count = 0
    while True:
        found = False
        low = 0
        for j in range(n_runs):
            if at[j] < keys[j].size and (not found or keys[j][at[j]] < low):
                low = keys[j][at[j]]
                found = True
        if not found:
            return count
        for j in range(n_runs):
            if at[j] < keys[j].size and keys[j][at[j]] == low:
                at[j] += 1
        count += 1


@numba.njit(cache=True, nogil=True)
def _write_chunk(  # pragma: no cover - compiled
    buf, width, lo, cols, factors, count_col, count_factor, out, counts
):
    """A merge's chunk of ``width`` merged rows (``buf``, from key ``lo``) written out
    entry-major, each entry its table column times its factor, and the counts: one
    owner for :func:`merge_rows` and :func:`merge_two_rows`."""
    n_entries = cols.size
    start = n_entries * lo
    for e in range(n_entries):
        col = cols[e]
        factor = factors[e]
        base = start + e * width
        for i in range(width):
            out[base + i] = buf[i, col] * factor
    for i in range(width):
        counts[lo + i] = buf[i, count_col] * count_factor


@numba.njit(cache=True, nogil=True)
def _widest(edges):  # pragma: no cover - compiled
    """The most keys of one chunk of ``edges`` (int64 (C+1,)): a merge's buffer's rows."""
    widest = 0
    for c in range(edges.size - 1):
        widest = max(widest, edges[c + 1] - edges[c])
    return widest


def _checked_sizes(edges, cols, out, merged, counts) -> np.ndarray:
    """``edges`` checked against ``merged.size`` keys, and ``counts`` (one a key) and
    ``out`` (``len(cols)`` entries a key) large enough for them: the compiled merges
    write without bounds checks."""
    edges = checked_edges(edges, merged.size)
    if counts.size < merged.size:
        raise ValueError(f"counts holds {counts.size} entries, not the {merged.size} keys'")
    if out.size < len(cols) * merged.size:
        raise ValueError(
            f"out holds {out.size} entries, not {len(cols)} for each of {merged.size} keys"
        )
    return edges


def merge_rows(keys, rows, cols, factors, count_col, count_factor, edges, out, merged, counts):
    """The runs' rows added by key, written by the chunks of ``edges``
    (:func:`_merge_rows`, which writes without bounds checks: ``edges`` are checked
    first, :func:`~dmixed.kernels.compiled.checked_edges`, to end at ``merged.size``).

    ``merged`` must hold :func:`merged_count` of the runs' keys (the caller sized it so);
    ``counts`` and ``out`` are checked against it.

    Raises
    ------
    ValueError
        ``edges`` are not edges of ``merged.size`` keys (the message names ``edges``), or
        ``counts`` / ``out`` are too small for them.
    """
    edges = _checked_sizes(edges, cols, out, merged, counts)
    _merge_rows(keys, rows, cols, factors, count_col, count_factor, edges, out, merged, counts)


def merge_two_rows(
    keys0, keys1, rows0, rows1, cols, factors, count_col, count_factor, edges, out, merged, counts
):
    """:func:`merge_rows` of two runs (:func:`_merge_two_rows`), ``edges`` checked as
    there.

    Raises
    ------
    ValueError
        As :func:`merge_rows`.
    """
    edges = _checked_sizes(edges, cols, out, merged, counts)
    _merge_two_rows(
        keys0, keys1, rows0, rows1, cols, factors, count_col, count_factor, edges, out, merged,
        counts,
    )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _merge_rows(  # pragma: no cover - compiled
    keys, rows, cols, factors, count_col, count_factor, edges, out, merged, counts
):
    """The runs' rows added by key (runs as :func:`merged_count` takes them; ``rows[j]``
    the rows of ``keys[j]``), written entry-major by chunks: chunk ``c`` the keys
    ``edges[c]:edges[c+1]`` (int64, :attr:`~dmixed.kernels.groups.ChunkSpans.edges` of
    the block made of them: :func:`~dmixed.kernels.term_table.merge_term_rows`).

    Key ``g``'s terms are added from zero in the runs' order into a row of a buffer of
    one chunk (row-major: the runs' rows are read once, in order); then the chunk's
    entries are written one after the other, entry ``e`` of key ``g`` (term
    ``cols[e]`` times ``factors[e]``) to ``out[E·lo + e·G_c + (g − lo)]`` (``lo`` the
    chunk's first key, ``G_c`` its keys, ``E = cols.size``: each entry a contiguous
    run), its count (term ``count_col`` times ``count_factor``) to ``counts[g]``, the
    key to ``merged[g]``.  No bounds checks: ``edges`` as :func:`merge_rows` checks
    them."""
    n_runs = len(keys)
    n_terms = rows[0].shape[1]
    at = np.zeros(n_runs, dtype=np.int64)
    size = np.empty(n_runs, dtype=np.int64)
    head = np.empty(n_runs, dtype=np.int64)  # each run's next key, ``last`` past its end
    last = np.iinfo(np.int64).max
    for j in range(n_runs):
        size[j] = keys[j].size
        head[j] = keys[j][0] if size[j] else last
    buf = np.empty((_widest(edges), n_terms))
    for c in range(edges.size - 1):
        lo = edges[c]
        width = edges[c + 1] - lo
        for i in range(width):
            low = head[0]
            for j in range(1, n_runs):
                low = min(low, head[j])
            dst = buf[i]
            for t in range(n_terms):
                dst[t] = 0.0
            for j in range(n_runs):
                if head[j] == low and at[j] < size[j]:
                    src = rows[j][at[j]]
                    for t in range(n_terms):
                        dst[t] += src[t]
                    at[j] += 1
                    head[j] = keys[j][at[j]] if at[j] < size[j] else last
            merged[lo + i] = low
        _write_chunk(buf, width, lo, cols, factors, count_col, count_factor, out, counts)


@numba.njit(cache=True, nogil=True)
def _merge_two_rows(  # pragma: no cover - compiled
    keys0, keys1, rows0, rows1, cols, factors, count_col, count_factor, edges, out, merged, counts
):
    """:func:`_merge_rows` of two runs (``keys0`` with ``rows0``, then ``keys1`` with
    ``rows1``), the same additions in the same order and the same writes: a key of both
    runs is ``(0 + rows0[a]) + rows1[b]`` term by term, a key of one run ``0 + row``.

    Two runs are the common merge (a bucket's partials of two workers, whose keys are
    mostly the same); with two positions held as scalars (no array of heads to read and
    write a key) the pass is bound by its reads and writes.  No bounds checks: ``edges``
    as :func:`merge_two_rows` checks them."""
    n_terms = rows0.shape[1]
    n0, n1 = keys0.size, keys1.size
    last = np.iinfo(np.int64).max
    a0, a1 = 0, 0
    h0 = keys0[0] if n0 else last  # each run's next key, ``last`` past its end
    h1 = keys1[0] if n1 else last
    buf = np.empty((_widest(edges), n_terms))
    for c in range(edges.size - 1):
        lo = edges[c]
        width = edges[c + 1] - lo
        for i in range(width):
            dst = buf[i]
            if h0 == h1 and a0 < n0 and a1 < n1:
                src0, src1 = rows0[a0], rows1[a1]
                for t in range(n_terms):
                    dst[t] = (0.0 + src0[t]) + src1[t]
                merged[lo + i] = h0
                a0 += 1
                a1 += 1
                h0 = keys0[a0] if a0 < n0 else last
                h1 = keys1[a1] if a1 < n1 else last
            elif h0 < h1 or a1 == n1:  # a key of run 0 only (run 1 ended, or ahead)
                src0 = rows0[a0]
                for t in range(n_terms):
                    dst[t] = 0.0 + src0[t]
                merged[lo + i] = h0
                a0 += 1
                h0 = keys0[a0] if a0 < n0 else last
            else:
                src1 = rows1[a1]
                for t in range(n_terms):
                    dst[t] = 0.0 + src1[t]
                merged[lo + i] = h1
                a1 += 1
                h1 = keys1[a1] if a1 < n1 else last
        _write_chunk(buf, width, lo, cols, factors, count_col, count_factor, out, counts)


def _drop_unreadable_cache(directory: str, name: str) -> None:
    """Remove numba's cached index and code of module ``name`` when a file of it does not
    unpickle (cut short by a full disk or a killed process, or edited): numba raises on
    such a file at the kernel's first call instead of compiling again.  Its index is a
    pickled version followed by a pickle, each code file one pickle
    (``numba.core.caching.IndexDataCacheFile``)."""
    files = glob.glob(os.path.join(directory, "__pycache__", glob.escape(name) + ".*.nb[ic]"))
    try:
        for file in files:
            with open(file, "rb") as fh:
                if file.endswith(".nbi"):
                    pickle.load(fh)
                pickle.loads(fh.read())
    except Exception:  # noqa: BLE001 - any unreadable file: compile again
        for file in files:
            try:
                os.remove(file)
            except FileNotFoundError:  # another process removed it first
                pass


def _same_text(path: str, text: str) -> bool:
    try:
        with open(path) as fh:
            return fh.read() == text
    except OSError:
        return False
