"""Instructions of each stage of the data pass with a variance component, one at a time.

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \
        --callgrind-out-file=/dev/null python benchmarks/bench_vc_stages.py TREE STAGE SHAPE

Shapes as ``bench_vc_pass.py``; the stage runs once uncounted, then 3 times inside
``functools.reduce`` (divide callgrind's count by 3).  Stages: ``number``, ``table``
(the component's numbering and slot table), ``choose_w``/``choose_wo`` (the columns'
map with and without the component), ``ragged``/``packed`` (the pass with the
component, and without), ``acc_base`` (the group pass alone on the rows with the
component), ``plan_cells``/``plan_groups`` (the per-cell and per-group bincounts),
``pplan`` (the product plan of ``[Z, v]``), ``whole`` (the one-pass cells and groups),
``from_cells``, ``engine_w``/``engine_wo``.
"""

# ruff: noqa: E402  (the tree measured goes on the path before dmixed is imported)
import functools
import os
import sys

tree, stage, shape = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, tree)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_vc_pass as b

sys.argv = ["x", tree, os.path.dirname(os.path.abspath(__file__))]
ns: dict = {}
exec(b.SETUP, ns)
SHAPES, dmixed, np = ns["SHAPES"], ns["dmixed"], ns["np"]
from dmixed import kernels
from dmixed.engines.vc_local import StructuredVCEngine
from dmixed.kernels.vc_blocks import ragged_statistics
from dmixed.stats.keys import sorted_codes
from dmixed.stats.packed import PackedLayout
from dmixed.stats.slots import number_vc_cells
from dmixed.stats.standardize import Standardization

make, formula, kw, vc = SHAPES[shape]
data = make()
rw = dmixed.MixedLM.from_formula(formula, data=data, **dict(kw, vc_formula=vc)).rows
rwo = dmixed.MixedLM.from_formula(formula, data=data, **kw).rows
codes, labels = sorted_codes(rw.groups)
G = len(labels)
num = number_vc_cells(codes, rw.vc_cols[0], rw.vc_vals[0], G)
std_w = Standardization.choose(rw.endog, rw.exog, rw.exog_re, None, rw.vc_vals)
std_wo = Standardization.choose(rwo.endog, rwo.exog, rwo.exog_re, None, rwo.vc_vals)
cells = [(num.entry_pair, num.pair_group, num.pair_slots)]


#: the rows with the component, as both passes take them
with_rows = (codes, G, rw.endog, rw.exog, rw.exog_re, [num.entry_pair], rw.vc_vals)


def rag():
    return ragged_statistics(*with_rows, [num.width], rw.weights, std_w, cells)


ragged = rag()[0]


def packed():
    pk = PackedLayout(rwo.exog_re.shape[1], rwo.exog.shape[1] + 1)
    acc = np.zeros((pk.width, G))
    kernels.accumulate_packed_into(
        acc, codes, rwo.endog, rwo.exog, rwo.exog_re, rwo.weights, std_wo, []
    )
    return acc, pk


acc, pk = packed()
from dmixed.engines.local import LocalEngine
from dmixed.kernels.rows import accumulate_statistics, plan_sums, product_plan
from dmixed.kernels.vc_blocks import RaggedVC
from dmixed.kernels.vc_cells import whole_component_pass

xs = [rw.exog[:, 0], rw.exog[:, 1], rw.endog]
vcol = rw.vc_vals[0][:, 0]
cellc = num.entry_pair[:, 0]
terms = [("count",), ("col", 1), ("col", 2)]


def whole_pass():
    """The component's whole pass (the stage ``whole``)."""
    return whole_component_pass(*with_rows, rw.weights, std_w, cells, 1)


whole = whole_pass()
S = {
    "acc_base": lambda: accumulate_statistics(codes, G, rw.endog, rw.exog, rw.exog_re, None, std_w),
    "plan_cells": lambda: plan_sums(cellc, xs + [vcol], terms, num.pair_group.size, False),
    "plan_groups": lambda: plan_sums(codes, xs + [vcol], terms, G, False),
    "pplan": lambda: product_plan(xs, [rw.exog_re[:, 0], vcol]),
    "whole": whole_pass,
    "from_cells": lambda: RaggedVC.from_cells(
        whole[0], [whole[1]], 1, 1 + num.width, np.array([1])
    ),
    "number": lambda: number_vc_cells(codes, rw.vc_cols[0], rw.vc_vals[0], G),
    "table": lambda: num.table(G),
    "choose_w": lambda: Standardization.choose(rw.endog, rw.exog, rw.exog_re, None, rw.vc_vals),
    "choose_wo": lambda: Standardization.choose(
        rwo.endog, rwo.exog, rwo.exog_re, None, rwo.vc_vals
    ),
    "ragged": rag,
    "packed": packed,
    "engine_w": lambda: StructuredVCEngine(ragged),
    "engine_wo": lambda: LocalEngine.of_packed_columns(acc, pk),
    "codes": lambda: sorted_codes(rw.groups),
}
f = S[stage]
f()
functools.reduce(lambda *_: f(), range(3), None)
