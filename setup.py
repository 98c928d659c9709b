"""The optional C kernels of dmixed.kernels.c_sums (the rest is in pyproject.toml).

A machine without a C compiler still installs dmixed (``optional=True``): the numpy
kernels run there, and :mod:`dmixed.kernels.native` says whether the extension loaded.
Declared here rather than under ``[tool.setuptools]`` of pyproject.toml, whose
``ext-modules`` needs setuptools 74.1 or later (``build-system.requires`` asks for 64).
"""

import sys

from setuptools import Extension, setup

# the rows the extension builds are the numpy reference's bit for bit only where no
# multiply-add is fused (gcc fuses by default on some targets, aarch64 among them)
FLAGS = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"]

setup(
    ext_modules=[
        Extension(
            "dmixed.kernels.c_sums",
            ["dmixed/kernels/c_sums.c"],
            extra_compile_args=FLAGS,
            optional=True,
        )
    ]
)
