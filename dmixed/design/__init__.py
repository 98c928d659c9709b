"""The design layer: model matrices from formulas (one spec for every partition) or arrays.

Modules, bottom to top: ``messages`` (message helpers), ``dtypes`` (column classes and
kinds), ``missing`` (the missing-value policy), ``levels`` (global levels, codes),
``formula`` (parsing and the node-by-node whitelist), ``evaluate`` (formulaic's
evaluation), ``vc`` (sparse variance components), ``scan`` (the whole-data level scan,
pandas or Dask), ``prepare`` (one partition's columns, normalised), ``matrices`` (model
matrices of a partition), ``build`` and ``build_levels`` (the steps of ``build_spec``), ``spec``
(``ModelSpec``, ``build_spec``), ``arrays`` (statsmodels-style array input) and
``frame_rows`` (a DataFrame's model matrices by a spec).
"""

from .arrays import RowData
from .scan import is_dask
from .spec import (
    DesignMatrices,
    ModelDimensions,
    ModelNames,
    ModelSpec,
    build_spec,
    build_spec_prepared,
)

__all__ = [
    "DesignMatrices",
    "ModelDimensions",
    "ModelNames",
    "ModelSpec",
    "RowData",
    "build_spec",
    "build_spec_prepared",
    "is_dask",
]
