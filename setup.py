"""Build configuration that pyproject.toml cannot express: the optional C extensions.

``skeleton_attention.skeletons._ntu_fast`` is a one-pass parser for NTU ``.skeleton`` files;
``skeleton_attention.skeletons._rigid_fast`` is the loop of the multi-view alignment's batched
robust rigid fits. Both use the CPython C API only (no third-party headers) and are ``optional``:
without a C compiler or Python headers the build prints a warning, the install still succeeds,
and the numpy/pyarrow paths run instead (``ntu.FAST_PARSER_AVAILABLE``,
``rigid_batch.COMPILED_FITS_AVAILABLE`` are then False). Everything else about the package lives
in pyproject.toml.
"""

import sys

from setuptools import Extension, setup

# no fused multiply-adds: the fits' interpolation must round as numpy's separate multiply and add do
# (aarch64 compilers contract a * b + c by default; x86-64 without -mfma has no FMA anyway)
NO_FMA = [] if sys.platform == "win32" else ["-ffp-contract=off"]

setup(
    ext_modules=[
        Extension(
            "skeleton_attention.skeletons._ntu_fast",
            sources=["src/skeleton_attention/skeletons/_ntu_fast.c"],
            optional=True,
        ),
        Extension(
            "skeleton_attention.skeletons._rigid_fast",
            sources=["src/skeleton_attention/skeletons/_rigid_fast.c"],
            extra_compile_args=NO_FMA,
            optional=True,
        ),
    ],
)
