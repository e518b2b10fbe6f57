"""The optional compiled NTU parser (``_ntu_fast``) against the pure reader.

The compiled parser must return bit-identical arrays for every real file, decline (and so leave
the error to the pure reader) every bad input, and never turn damaged bytes into a parse that
the pure reader would not produce. When the extension is not built, the comparisons skip with a
clear reason and the pure reader is still exercised; under CI (``CI`` set) the extension must be
built.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skeleton_attention.skeletons import ntu
from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from tests import test_bad_input_ntu as bad_input
from tests.test_bad_input_ntu import real_bytes, real_lines  # noqa: F401  (fixtures of the suite below)

# Every bad-input test runs here again, once per parser path (see pytest_generate_tests).
for _name in dir(bad_input):
    if _name.startswith("test_"):
        globals()[f"test_bad_input__{_name[len('test_') :]}"] = getattr(bad_input, _name)

REPO_ROOT = Path(__file__).resolve().parents[1]
ARRAYS = ("bodies_per_frame", "body_frame", "body_ids", "body_info", "joints", "joint_tracking")
SOURCE = "S001C001P001R001A050.skeleton"
needs_fast = pytest.mark.skipif(
    not ntu.FAST_PARSER_AVAILABLE, reason="compiled parser _ntu_fast not built: only the pure reader is tested"
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.function.__module__ == bad_input.__name__:
        metafunc.parametrize("parser_path", ["pure", "fast"], indirect=True)


@pytest.fixture(autouse=True)
def parser_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """For the re-collected bad-input tests: which reader ``parse_ntu_skeleton`` uses by default."""
    path = getattr(request, "param", None)
    if path == "pure":
        monkeypatch.setenv(ntu.PURE_PARSER_ENV, "1")
    elif path == "fast":
        if not ntu.FAST_PARSER_AVAILABLE:
            pytest.skip("compiled parser _ntu_fast not built")
        monkeypatch.delenv(ntu.PURE_PARSER_ENV, raising=False)
    return path


def _real_files(shared_data: Path) -> list[Path]:
    files = [
        p for d in ("ntu_raw", "ntu_raw_crlf", "ntu_multiview") for p in sorted((shared_data / d).glob("*.skeleton"))
    ]
    assert len(files) >= 60
    return files


def _same_recording(a: ntu.NtuRecording, b: ntu.NtuRecording) -> None:
    assert (a.sample_id, a.path, a.name, a.num_frames) == (b.sample_id, b.path, b.name, b.num_frames)
    for key in ARRAYS:
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype and x.shape == y.shape, key
        assert x.tobytes() == y.tobytes(), f"{key} differs"


def _outcome(data: bytes, *, pure: bool) -> tuple[str, object]:
    """What a reader makes of the bytes: its recording, or its complete error."""
    try:
        return "ok", ntu.parse_ntu_skeleton(data, "x.skeleton", ntu.parse_ntu_name(SOURCE), pure=pure)
    except MalformedSkeletonFile as err:
        return "error", (err.reason, err.line, err.detail, str(err))


def _same_outcome(data: bytes) -> str:
    fast, pure = _outcome(data, pure=False), _outcome(data, pure=True)
    assert fast[0] == pure[0]
    if fast[0] == "ok":
        _same_recording(fast[1], pure[1])  # type: ignore[arg-type]
    else:
        assert fast[1] == pure[1]
    return fast[0]


# --- the switch -------------------------------------------------------------------------------


def test_fast_parser_is_built_under_ci() -> None:
    if os.environ.get("CI"):
        assert ntu.FAST_PARSER_AVAILABLE, "CI installs with a compiler: _ntu_fast should have been built"


def test_pure_reader_without_the_extension(ntu_raw: Path) -> None:
    """With the extension unimportable, the module still loads and reads with the pure path."""
    path = ntu_raw / SOURCE
    code = (
        "import sys; sys.modules['skeleton_attention.skeletons._ntu_fast'] = None\n"
        "from skeleton_attention.skeletons import ntu\n"
        "assert ntu.FAST_PARSER_AVAILABLE is False\n"
        f"rec = ntu.read_ntu_skeleton({str(path)!r})\n"
        "print(rec.num_records, rec.body_ids[-1], rec.joints.sum(dtype='float64').hex())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    rec = ntu.read_ntu_skeleton(path, pure=True)
    assert out.stdout.split() == [str(rec.num_records), str(rec.body_ids[-1]), rec.joints.sum(dtype="float64").hex()]


@needs_fast
def test_environment_variable_forces_the_pure_reader(ntu_raw: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_parse = ntu._ntu_fast.parse
    monkeypatch.setattr(ntu._ntu_fast, "parse", lambda data: calls.append(1) or real_parse(data))
    ntu.read_ntu_skeleton(ntu_raw / SOURCE)
    assert calls == [1]
    monkeypatch.setenv(ntu.PURE_PARSER_ENV, "1")
    ntu.read_ntu_skeleton(ntu_raw / SOURCE)
    ntu.read_ntu_skeleton(ntu_raw / SOURCE, pure=True)
    assert calls == [1]
    ntu.read_ntu_skeleton(ntu_raw / SOURCE, pure=False)  # the argument beats the variable
    assert calls == [1, 1]


# --- real files ---------------------------------------------------------------------------------


def test_pure_reader_reads_every_real_file(shared_data: Path) -> None:
    for path in _real_files(shared_data):
        rec = ntu.read_ntu_skeleton(path, pure=True)
        assert rec.joints.shape == (rec.num_records, 25, 11) and rec.num_records > 0


@needs_fast
def test_fast_and_pure_are_bit_identical_on_every_real_file(shared_data: Path) -> None:
    for path in _real_files(shared_data):
        data = path.read_bytes()
        assert ntu._ntu_fast.parse(data) is not None, f"{path.name}: the compiled parser declined a real file"
        fast = ntu.read_ntu_skeleton(path, pure=False)
        _same_recording(fast, ntu.read_ntu_skeleton(path, pure=True))
        for key in ARRAYS:
            array = getattr(fast, key)
            assert array.flags.c_contiguous and array.flags.writeable, key


@needs_fast
def test_crlf_twins_match_their_lf_files(shared_data: Path) -> None:
    for crlf in sorted((shared_data / "ntu_raw_crlf").glob("*.skeleton")):
        assert b"\r\n" in crlf.read_bytes()
        a = ntu.read_ntu_skeleton(crlf, pure=False)
        b = ntu.read_ntu_skeleton(shared_data / "ntu_raw" / crlf.name, pure=False)
        for key in ARRAYS:
            assert getattr(a, key).tobytes() == getattr(b, key).tobytes(), key


@needs_fast
def test_values_equal_python_float_of_the_text(ntu_raw: Path) -> None:
    """Independent of both readers: every joint value is float32(float(token))."""
    path = ntu_raw / "S001C001P001R001A003.skeleton"  # has exponent notation such as -9.276937E-05
    text = path.read_bytes()
    assert b"E-" in text
    rec = ntu.read_ntu_skeleton(path, pure=False)
    lines = text.split(b"\n")
    rows, i = [], 1
    for _ in range(int(lines[0])):
        bodies = int(lines[i])
        i += 1
        for _ in range(bodies):
            rows.extend(lines[i + 2 : i + 27])
            i += 27
    expected = np.array([[float(t) for t in row.split()] for row in rows], dtype=np.float64)
    assert rec.joints.reshape(-1, 11).tobytes() == expected[:, :11].astype(np.float32).tobytes()


# --- number grammar ----------------------------------------------------------------------------

_ACCEPTED = [
    "0",
    "-0",
    "+1",
    "5.",
    ".5",
    "-.5",
    "+.5",
    "007.50",
    "1E+05",
    "1e-05",
    "-9.276937E-05",
    "0.00000000",
    "12345678",
    "123456789",
    "1234567.12345678",
    "0.123456789",
    "-0.09226985",
    "9007199254740993",
    "9007199254740992.5",
    "123456789012345678901234567890",
    "0.1234567890123456789012345",
    "1e22",
    "1e23",
    "1.5e-22",
    "1.5e-23",
    "4.9e-324",
    "2.2250738585072011e-308",
    "1e-400",
    "-1e-400",
    "1.401298464324817e-45",
    "0.1",
    "0.2",
    "0.3",
    "123.456",
    "2.5e0",
    "1e000000000000000000001",
]
_REJECTED = [
    "nan",
    "-inf",
    "Infinity",
    "1e999",
    "-1e400",
    "1_000",
    "0x10",
    "1,5",
    "--1",
    "2e",
    "e5",
    ".",
    "-",
    "1.2.3",
    "1e5.5",
    "１",
    "1d5",
    "0.5f",
]


def _with_token(real: bytes, token: str, *, field: int = 4, line: int = 100) -> bytes:
    lines = real.split(b"\n")
    parts = lines[line - 1].split(b" ")
    parts[field] = token.encode()
    lines[line - 1] = b" ".join(parts)
    return b"\n".join(lines)


@needs_fast
@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # beyond float32: inf in both readers
@pytest.mark.parametrize("token", _ACCEPTED)
def test_accepted_number_spellings_are_exact(real_bytes: bytes, token: str) -> None:  # noqa: F811
    line = bad_input._joint_line(1, 0, 20)
    data = _with_token(real_bytes, token, line=line)
    assert ntu._ntu_fast.parse(data) is not None, "the compiled parser should handle this spelling itself"
    assert _same_outcome(data) == "ok"
    rec = ntu.parse_ntu_skeleton(data, "x.skeleton", ntu.parse_ntu_name(SOURCE), pure=False)
    value = rec.joints[2 * 1 + 0, 20, 4]  # frame 1, body 0 is record 2 (2 bodies per frame)
    assert value.tobytes() == np.float32(float(token)).tobytes()


@needs_fast
@pytest.mark.parametrize("token", _REJECTED)
def test_rejected_number_spellings_fall_back_to_the_pure_error(real_bytes: bytes, token: str) -> None:  # noqa: F811
    data = _with_token(real_bytes, token, line=bad_input._joint_line(1, 0, 20))
    assert ntu._ntu_fast.parse(data) is None
    assert _same_outcome(data) == "error"


@needs_fast
@pytest.mark.parametrize("token", ["2", "2.0", "2e0", "+2", "-0", "-127", "127", "0.5", "128", "-128", "1e-300"])
def test_tracking_state_spellings(real_bytes: bytes, token: str) -> None:  # noqa: F811
    _same_outcome(_with_token(real_bytes, token, field=11, line=bad_input._joint_line(3, 1, 7)))


@needs_fast
@pytest.mark.parametrize("body_id", ["0", "00072057594037932127", str(2**64 - 1), str(2**64), "+1", "-1", "1.0"])
def test_body_id_spellings(real_bytes: bytes, body_id: str) -> None:  # noqa: F811
    _same_outcome(_with_token(real_bytes, body_id, field=0, line=bad_input._info_line(5, 0)))


@needs_fast
@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.replace(b"\n", b"\r\n"),  # CRLF everywhere
        lambda t: t.replace(b" ", b"\t"),  # tabs
        lambda t: t.replace(b" ", b"  "),  # double spaces
        lambda t: t.replace(b"\n", b" \n "),  # leading and trailing spaces
        lambda t: t.replace(b" ", b"\x0b", 3),  # vertical tab: pure accepts, fast declines
        lambda t: t.replace(b" ", b"\r", 5),  # lone CR inside a line
        lambda t: t + b"\n\n  \r\n\t",  # trailing blank lines
        lambda t: t.rstrip(b"\n"),  # no final newline
        lambda t: b"\n" + t,  # leading blank line
        lambda t: b"\xef\xbb\xbf" + t,  # UTF-8 byte-order mark
        lambda t: t.replace(b"\n25\n", b"\n025\n", 4),  # joint count with a leading zero
        lambda t: b"0" + t,  # frame count with a leading zero
        lambda t: t + b"x",  # junk glued to the last value
        lambda t: t + b"\n1\n",  # trailing data
        lambda t: t[: t.rindex(b"\n", 0, len(t) - 1) + 1],  # last line missing
    ],
)
def test_whitespace_and_framing_variants(real_bytes: bytes, edit) -> None:  # noqa: F811
    _same_outcome(edit(real_bytes))


@needs_fast
def test_accepts_any_bytes_like_input(real_bytes: bytes) -> None:  # noqa: F811
    reference = ntu._ntu_fast.parse(real_bytes)
    for data in (bytearray(real_bytes), memoryview(real_bytes)):
        assert ntu._ntu_fast.parse(data) == reference
    with pytest.raises(TypeError):
        ntu._ntu_fast.parse("text")


# --- damaged bytes ------------------------------------------------------------------------------

_DAMAGE = [
    lambda data, i, b: data[:i],  # truncation
    lambda data, i, b: data[:i] + bytes([b]) + data[i + 1 :],  # byte replaced
    lambda data, i, b: data[:i] + bytes([b ^ data[i]]) + data[i + 1 :],  # bits flipped
    lambda data, i, b: data[:i] + data[i + 1 :],  # byte deleted
    lambda data, i, b: data[:i] + bytes([b]) + data[i:],  # byte inserted
    lambda data, i, b: data[:i] + b"\n" + data[i:],  # line split
]


def _excerpt(data: bytes, frames: int) -> bytes:
    """The first ``frames`` frames of a real file as a complete file (same line endings)."""
    lines = data.split(b"\n")
    i = 1
    for _ in range(frames):
        i += 1 + 27 * int(lines[i])
    crlf = b"\r" if lines[0].endswith(b"\r") else b""
    return b"\n".join([str(frames).encode() + crlf, *lines[1:i]]) + b"\n"


@pytest.fixture(scope="module")
def damage_sources(ntu_raw: Path, shared_data: Path) -> list[bytes]:
    """Small excerpts (the pure reader's line-by-line error pass is slow on whole files): two-body
    LF frames and one-body CRLF frames."""
    return [
        _excerpt((ntu_raw / SOURCE).read_bytes(), 4),
        _excerpt((shared_data / "ntu_raw_crlf" / "S001C001P001R001A006.skeleton").read_bytes(), 6),
    ]


@needs_fast
def test_excerpts_parse(damage_sources: list[bytes]) -> None:
    for data in damage_sources:
        assert ntu._ntu_fast.parse(data) is not None
        assert _same_outcome(data) == "ok"


@needs_fast
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    source=st.integers(0, 1),
    position=st.floats(0.0, 1.0),
    kind=st.integers(0, len(_DAMAGE) - 1),
    byte=st.sampled_from([ord(c) for c in "0123456789.-+eE \t\r\nx"] + [0, 0x0B, 0x80, 0xFF]),
)
def test_damaged_bytes_give_the_pure_outcome(
    damage_sources: list[bytes], source: int, position: float, kind: int, byte: int
) -> None:
    data = damage_sources[source]
    index = min(int(position * len(data)), len(data) - 1)
    _same_outcome(_DAMAGE[kind](data, index, byte))


@needs_fast
def test_every_cut_near_the_end_gives_the_pure_outcome(damage_sources: list[bytes]) -> None:
    """Cuts in the last 300 bytes reach the buffer-end paths (short reads near the end)."""
    for data in damage_sources:
        outcomes = {_same_outcome(data[:cut]) for cut in range(len(data) - 300, len(data) + 1)}
        assert outcomes == {"ok", "error"}


@needs_fast
def test_small_and_degenerate_inputs(real_bytes: bytes) -> None:  # noqa: F811
    one_body = b"\n".join(real_bytes.split(b"\n")[2:29])
    for data in [
        b"",
        b"\n",
        b"1",
        b"1\n",
        b"1\n0",
        b"1\n1",
        b"2\n0\n0\n",
        b"1\n1\n" + one_body,
        b"1\n1\n" + one_body + b"\n",
        b"1\n1\n" + one_body.replace(b" ", b"\t"),
        b"99999999999999999999999\n1\n" + one_body,
        b"1\n40000\n" + one_body,
        b"1\n" + b"0" * 10_000 + b"1\n" + one_body,
    ]:
        _same_outcome(data)


@pytest.mark.parametrize("token", ["1.7976931348623157e308", "3.4028235677973366e38", "-1e39"])
@pytest.mark.parametrize("pure", [True, False])
def test_values_beyond_float32_are_non_finite_errors(real_bytes: bytes, token: str, pure: bool) -> None:  # noqa: F811
    line = bad_input._joint_line(1, 0, 20)
    data = _with_token(real_bytes, token, line=line)
    with pytest.raises(MalformedSkeletonFile) as info:
        ntu.parse_ntu_skeleton(data, "x.skeleton", ntu.parse_ntu_name(SOURCE), pure=pure)
    assert info.value.reason == "non_finite" and info.value.line == line
