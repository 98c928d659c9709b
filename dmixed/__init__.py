"""dmixed: exact linear mixed models (statsmodels' MixedLM) from per-group statistics,
in-process or on Dask.

``import dmixed`` imports only the error classes: the public names below are imported
on first use (PEP 562), so that the ``dmixed`` command handles Ctrl-C from its first
moment (:mod:`dmixed.__main__`) and a script that needs one name does not pay for all.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import *  # noqa: F403 - every class of errors.__all__

if TYPE_CHECKING:  # what the names are, for type checkers (imported on first use)
    from .inference import anova, compare_lr_test
    from .model import MixedLM, MixedLMParams, mixedlm
    from .results import MixedLMResults, load

#: public name → the module it comes from (imported on first use)
_LAZY = {
    "MixedLM": ".model",
    "MixedLMParams": ".model",
    "mixedlm": ".model",
    "anova": ".inference",
    "compare_lr_test": ".inference",
    "MixedLMResults": ".results",
    "load": ".results",
}

__all__ = [
    "MixedLM",
    "MixedLMParams",
    "MixedLMResults",
    "mixedlm",
    "anova",
    "compare_lr_test",
    "load",
]
__all__ += errors.__all__


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from .files import dmixed_version

        value: Any = dmixed_version()
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f".{name}", __name__)  # dmixed.results, as before
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # the next use finds it without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | {"__version__"})
