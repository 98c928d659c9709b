"""The skip marks of the tests of the C extension (:mod:`dmixed.kernels.native`)."""

from __future__ import annotations

import pytest

from dmixed.kernels import native


def _numpy_forced() -> bool:
    """Whether the suite runs with ``DMIXED_NATIVE=numpy`` (a value ``forced`` refuses
    is its tests' to report, not a reason to skip)."""
    try:
        return native.forced() == "numpy"
    except ValueError:
        return False


#: the tests of the extension that set ``DMIXED_NATIVE`` themselves
built = pytest.mark.skipif(not native.loaded(), reason="the C extension is not built")

#: the tests that call the extension through :func:`~dmixed.kernels.native.extension`,
#: which gives None under ``DMIXED_NATIVE=numpy`` (they failed, or compared numpy with
#: itself): skipped there
called = pytest.mark.skipif(
    not native.loaded() or _numpy_forced(),
    reason="the C extension is not built, or DMIXED_NATIVE=numpy keeps it from being called",
)
