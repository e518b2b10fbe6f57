"""Errors raised by the raw readers for malformed input."""

from __future__ import annotations


class MalformedSkeletonFile(ValueError):
    """A raw file that cannot be read as the format it claims to be.

    Carries the file, a short machine-readable ``reason`` (e.g. ``"truncated"``,
    ``"wrong_joint_count"``, ``"non_numeric"``, ``"non_finite"``, ``"zero_frames"``,
    ``"empty_file"``, ``"binary_file"``, ``"malformed_json"``, ``"duplicate_sample"``)
    and the 1-based line where the problem was found (``None`` when not line-based).
    The quarantine manifest stores these three fields plus ``detail``.
    """

    def __init__(self, path: str, reason: str, detail: str, line: int | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        self.line = line
        where = f", line {line}" if line is not None else ""
        super().__init__(f"{self.path}{where}: {reason}: {detail}")

    def as_record(self) -> dict[str, object]:
        return {"file": self.path, "reason": self.reason, "line": self.line, "detail": self.detail}
