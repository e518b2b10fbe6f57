"""Reading a raw text file with the checks every text reader shares (empty, binary, encoding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skeleton_attention.skeletons.errors import MalformedSkeletonFile

_ENCODING_NAMES = {"ascii": "ASCII", "utf-8": "UTF-8"}


def read_text(path: Path, encoding: str = "ascii") -> str:
    """The file's text; ``empty_file`` when it holds only whitespace, ``binary_file`` when it has a
    NUL byte or does not decode as ``encoding``."""
    raw = path.read_bytes()
    if not raw.strip():
        raise MalformedSkeletonFile(str(path), "empty_file", "file is empty")
    if b"\x00" in raw:
        raise MalformedSkeletonFile(str(path), "binary_file", "file contains NUL bytes")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        shown = _ENCODING_NAMES.get(encoding, encoding)
        raise MalformedSkeletonFile(str(path), "binary_file", f"not {shown} text: {exc}") from None


def read_lines(path: Path, encoding: str = "ascii") -> list[str]:
    """:func:`read_text` split into lines, trailing blank lines dropped (line numbers stay 1-based)."""
    lines = read_text(path, encoding).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def parse_float_rows(path: Path, rows: list[list[str]], first_line: int = 1) -> np.ndarray:
    """``rows`` of number strings as a float64 array; a token that is not a number is a
    ``non_numeric`` error naming the file and its line (``first_line`` = the line of ``rows[0]``)."""
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        for number, fields in enumerate(rows, start=first_line):
            for token in fields:
                try:
                    float(token)
                except ValueError:
                    raise MalformedSkeletonFile(str(path), "non_numeric", f"value {token!r}", number) from None
        raise  # pragma: no cover - numpy and float() disagree only on exotic input
