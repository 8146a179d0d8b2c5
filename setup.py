"""Builds the fovea sampler C extension from ext/ (portable flags: no -march=native)."""
import glob
import os

import numpy
from setuptools import Extension, setup

sources = sorted(glob.glob(os.path.join("ext", "*.c")))
extra = os.environ.get("FLIP_EXT_CFLAGS", "").split()  # e.g. FLIP_EXT_CFLAGS=-march=native for a local build
ext_modules = [
    Extension(
        "flip._fovea",
        sources=sources,
        include_dirs=["ext", numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wno-unused-function", *extra],
    )
] if sources else []

setup(ext_modules=ext_modules)
