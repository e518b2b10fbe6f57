"""Build configuration that pyproject.toml cannot express: the optional C extension.

``skeleton_attention.skeletons._ntu_fast`` is a one-pass parser for NTU ``.skeleton`` files
(CPython C API only, no third-party headers). It is ``optional``: without a C compiler or Python
headers the build prints a warning, the install still succeeds, and ``ntu.read_ntu_skeleton``
uses its pure-Python/pyarrow path (``ntu.FAST_PARSER_AVAILABLE`` is then False). Everything else
about the package lives in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "skeleton_attention.skeletons._ntu_fast",
            sources=["src/skeleton_attention/skeletons/_ntu_fast.c"],
            optional=True,
        )
    ],
)
