"""The design layer: model matrices from formulas (one spec for every partition) or arrays."""

from .arrays import RowData
from .spec import DesignMatrices, ModelSpec, build_spec

__all__ = ["DesignMatrices", "ModelSpec", "RowData", "build_spec"]
