"""Malformed NTU files, each derived from a real one, must raise MalformedSkeletonFile with the
right reason, the offending line and the file's path in the message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.ntu import parse_ntu_name, parse_ntu_skeleton, read_ntu_skeleton

SOURCE = "S001C001P001R001A050.skeleton"  # 74 frames x 2 bodies: 1 + 74 * (1 + 2 * 27) lines


@pytest.fixture(scope="module")
def real_lines(ntu_raw: Path) -> list[str]:
    lines = (ntu_raw / SOURCE).read_text().split("\n")
    assert lines[-1] == ""
    return lines[:-1]


def _write(tmp_path: Path, lines: list[str], *, newline: bool = True) -> Path:
    path = tmp_path / SOURCE
    path.write_text("\n".join(lines) + ("\n" if newline else ""))
    return path


def _expect(path: Path, reason: str, line: int | None = None) -> MalformedSkeletonFile:
    with pytest.raises(MalformedSkeletonFile) as err:
        read_ntu_skeleton(path)
    assert err.value.reason == reason, str(err.value)
    assert str(path) in str(err.value)
    assert err.value.path == str(path)
    if line is not None:
        assert err.value.line == line, str(err.value)
    return err.value


# Line numbers (1-based) in A050: 1 frame count; frame f (0-based) starts at 2 + 55 f with its
# body count; body b's info line is at 3 + 55 f + 27 b, its "25" below, its joints after that.
def _info_line(frame: int, body: int) -> int:
    return 3 + 55 * frame + 27 * body


def _joint_line(frame: int, body: int, joint: int) -> int:
    return _info_line(frame, body) + 2 + joint


def _replace_token(lines: list[str], line: int, index: int, token: str) -> list[str]:
    out = list(lines)
    parts = out[line - 1].split(" ")
    parts[index] = token
    out[line - 1] = " ".join(parts)
    return out


def test_line_arithmetic_matches_the_file(real_lines: list[str]) -> None:
    assert len(real_lines) == 1 + 74 * 55
    assert real_lines[_info_line(10, 1) - 1].startswith("72057594037932127 ")
    assert real_lines[_info_line(10, 1)] == "25"
    assert len(real_lines[_joint_line(73, 1, 24) - 1].split()) == 12


def test_truncated_between_lines(tmp_path: Path, real_lines: list[str]) -> None:
    kept = _joint_line(40, 0, 10)  # cut inside frame 40's first body
    err = _expect(_write(tmp_path, real_lines[:kept]), "truncated", kept + 1)
    assert "frame 41" in err.detail


def test_truncated_at_frame_boundary(tmp_path: Path, real_lines: list[str]) -> None:
    kept = 1 + 60 * 55  # exactly 60 complete frames of 74
    _expect(_write(tmp_path, real_lines[:kept]), "truncated", kept + 1)


def test_truncated_mid_line(tmp_path: Path, real_lines: list[str]) -> None:
    lines = list(real_lines)
    lines[-1] = lines[-1][: lines[-1].index(" 0 0 0 0 2") - 3]  # cut inside the last joint line
    _expect(_write(tmp_path, lines, newline=False), "truncated", len(lines))


def test_wrong_joint_count_line(tmp_path: Path, real_lines: list[str]) -> None:
    lines = list(real_lines)
    lines[_info_line(5, 1)] = "24"
    _expect(_write(tmp_path, lines), "wrong_joint_count", _info_line(5, 1) + 1)


def test_joint_line_with_eleven_values(tmp_path: Path, real_lines: list[str]) -> None:
    line = _joint_line(7, 0, 3)
    lines = list(real_lines)
    lines[line - 1] = " ".join(lines[line - 1].split()[:11])
    _expect(_write(tmp_path, lines), "wrong_joint_count", line)


def test_joint_line_with_thirteen_values(tmp_path: Path, real_lines: list[str]) -> None:
    line = _joint_line(70, 1, 24)
    lines = list(real_lines)
    lines[line - 1] += " 0.5"
    _expect(_write(tmp_path, lines), "wrong_joint_count", line)


@pytest.mark.parametrize("count", ["-1", "x", "1.5", ""])
def test_wrong_body_count(tmp_path: Path, real_lines: list[str], count: str) -> None:
    line = 2 + 55 * 12
    lines = list(real_lines)
    lines[line - 1] = count
    _expect(_write(tmp_path, lines), "wrong_body_count", line)


def test_body_count_larger_than_the_data(tmp_path: Path, real_lines: list[str]) -> None:
    lines = list(real_lines)
    lines[1] = "3"  # frame 1 claims 3 bodies: its third "info line" is frame 2's body count
    err = _expect(_write(tmp_path, lines), "wrong_body_count", 2)
    assert "declares 3 bodies" in err.detail


@pytest.mark.parametrize("token", ["abc", "0.12.3", "1,5", "--1", "0x10", "1_000", "2e"])
def test_non_numeric_joint_value(tmp_path: Path, real_lines: list[str], token: str) -> None:
    line = _joint_line(33, 1, 17)
    _expect(_write(tmp_path, _replace_token(real_lines, line, 4, token)), "non_numeric", line)


@pytest.mark.parametrize("token", ["nan", "NaN", "-nan", "inf", "-Infinity", "1e999"])
def test_non_finite_joint_value(tmp_path: Path, real_lines: list[str], token: str) -> None:
    line = _joint_line(20, 0, 0)
    _expect(_write(tmp_path, _replace_token(real_lines, line, 1, token)), "non_finite", line)


def test_non_finite_body_info(tmp_path: Path, real_lines: list[str]) -> None:
    line = _info_line(50, 1)
    _expect(_write(tmp_path, _replace_token(real_lines, line, 7, "NaN")), "non_finite", line)


def test_non_numeric_body_id(tmp_path: Path, real_lines: list[str]) -> None:
    line = _info_line(3, 0)
    _expect(_write(tmp_path, _replace_token(real_lines, line, 0, "7.2057594037932185E+16")), "non_numeric", line)
    _expect(_write(tmp_path, _replace_token(real_lines, line, 0, str(2**64))), "non_numeric", line)


def test_body_info_line_with_missing_field(tmp_path: Path, real_lines: list[str]) -> None:
    line = _info_line(3, 0)
    lines = list(real_lines)
    lines[line - 1] = " ".join(lines[line - 1].split()[:9])
    _expect(_write(tmp_path, lines), "missing_field", line)


def test_fractional_tracking_state(tmp_path: Path, real_lines: list[str]) -> None:
    line = _joint_line(2, 1, 5)
    _expect(_write(tmp_path, _replace_token(real_lines, line, 11, "1.5")), "non_numeric", line)


def test_non_numeric_frame_count(tmp_path: Path, real_lines: list[str]) -> None:
    _expect(_write(tmp_path, ["seventy-four", *real_lines[1:]]), "non_numeric", 1)


def test_zero_frames_declared(tmp_path: Path) -> None:
    _expect(_write(tmp_path, ["0"]), "zero_frames", 1)


def test_every_frame_empty(tmp_path: Path) -> None:
    _expect(_write(tmp_path, ["3", "0", "0", "0"]), "zero_frames")


@pytest.mark.parametrize("content", [b"", b"\n", b"  \r\n\n \t\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / SOURCE
    path.write_bytes(content)
    _expect(path, "empty_file")


def test_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / SOURCE
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _expect(path, "binary_file")


def test_binary_without_nul(tmp_path: Path, real_lines: list[str]) -> None:
    path = tmp_path / SOURCE
    data = ("\n".join(real_lines[:100]) + "\n").encode() + b"\xff\xfe\x81" + b"\n"
    path.write_bytes(data)
    _expect(path, "binary_file", 101)


def test_nul_byte_inside_real_file(tmp_path: Path, real_lines: list[str]) -> None:
    path = tmp_path / SOURCE
    path.write_bytes(
        ("\n".join(real_lines[:500]) + "\n").encode() + b"\x00\x00" + ("\n".join(real_lines[500:]) + "\n").encode()
    )
    _expect(path, "binary_file", 501)


def test_trailing_data(tmp_path: Path, real_lines: list[str]) -> None:
    _expect(_write(tmp_path, [*real_lines, "", "1"]), "trailing_data", len(real_lines) + 1)
    _expect(_write(tmp_path, [*real_lines, real_lines[-1]]), "trailing_data", len(real_lines) + 1)


def test_trailing_blank_lines_are_fine(tmp_path: Path, real_lines: list[str], ntu_raw: Path) -> None:
    rec = read_ntu_skeleton(_write(tmp_path, [*real_lines, "", "  ", "\r"]))
    assert np.array_equal(rec.joints, read_ntu_skeleton(ntu_raw / SOURCE).joints)


def test_unusual_spacing_is_parsed_not_rejected(tmp_path: Path, real_lines: list[str], ntu_raw: Path) -> None:
    lines = list(real_lines)
    lines[_joint_line(4, 0, 0) - 1] = "  " + lines[_joint_line(4, 0, 0) - 1].replace(" ", "\t") + " "
    lines[_joint_line(9, 1, 3) - 1] = lines[_joint_line(9, 1, 3) - 1].replace(" ", "   ")
    rec = read_ntu_skeleton(_write(tmp_path, lines))
    ref = read_ntu_skeleton(ntu_raw / SOURCE)
    assert np.array_equal(rec.joints, ref.joints) and np.array_equal(rec.body_ids, ref.body_ids)


def test_bad_file_name(tmp_path: Path, ntu_raw: Path) -> None:
    path = tmp_path / "drink_water.skeleton"
    path.write_bytes((ntu_raw / SOURCE).read_bytes())
    _expect(path, "bad_name")


# Property checks on the bytes of the real file (no disk writes).


@pytest.fixture(scope="module")
def real_bytes(ntu_raw: Path) -> bytes:
    return (ntu_raw / SOURCE).read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(min_value=0.0, max_value=1.0))
def test_any_cut_is_reported_as_truncated(real_bytes: bytes, fraction: float) -> None:
    first_line = real_bytes.index(b"\n") + 1
    cut = first_line + int(fraction * (len(real_bytes) - 2 - first_line))
    with pytest.raises(MalformedSkeletonFile) as err:
        parse_ntu_skeleton(real_bytes[:cut], "cut.skeleton", parse_ntu_name(SOURCE))
    assert err.value.reason == "truncated", str(err.value)


_MUTATE: list[Callable[[bytes, int], bytes]] = [
    lambda data, i: data[:i] + b"x" + data[i + 1 :],
    lambda data, i: data[:i] + b"\n" + data[i + 1 :],
    lambda data, i: data[:i] + data[i + 1 :],
    lambda data, i: data[:i] + b" " + data[i:],
    lambda data, i: data[:i] + b"9" + data[i + 1 :],
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(min_value=0.0, max_value=1.0), kind=st.integers(0, len(_MUTATE) - 1))
def test_single_byte_damage_never_escapes_as_another_exception(real_bytes: bytes, position: float, kind: int) -> None:
    index = int(position * (len(real_bytes) - 1))
    damaged = _MUTATE[kind](real_bytes, index)
    try:
        rec = parse_ntu_skeleton(damaged, "damaged.skeleton", parse_ntu_name(SOURCE))
    except MalformedSkeletonFile as err:
        assert err.path == "damaged.skeleton" and err.line is not None
    else:
        assert rec.joints.shape[1:] == (25, 11) and np.isfinite(rec.joints).all()


@pytest.mark.parametrize("pure", [True, False])
def test_value_beyond_float32_range_is_non_finite_on_both_paths(tmp_path: Path, real_lines: list[str], pure) -> None:
    line = _joint_line(1, 0, 4)
    path = _write(tmp_path, _replace_token(real_lines, line, 5, "1e39"))  # colour x of joint 4
    with pytest.raises(MalformedSkeletonFile) as info:
        parse_ntu_skeleton(path.read_bytes(), str(path), parse_ntu_name(path), pure=pure)
    assert info.value.reason == "non_finite" and info.value.line == line and str(path) in str(info.value)
