"""A stamp beside a model file: what it was checked or made from, and its size and
mtime then, so a restart trusts an unchanged file without re-hashing or re-making it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def stamp_path(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def stamp_of(path: Path, facts: dict[str, object]) -> dict[str, object]:
    st = path.stat()
    return {**facts, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_stamped(path: Path, suffix: str, facts: dict[str, object]) -> bool:
    """True if ``path`` was stamped with ``facts`` and has not changed since (size, mtime)."""
    try:
        return bool(json.loads(stamp_path(path, suffix).read_text()) == stamp_of(path, facts))
    except (OSError, ValueError):
        return False


def write_stamp(path: Path, suffix: str, facts: dict[str, object]) -> None:
    try:
        stamp_path(path, suffix).write_text(json.dumps(stamp_of(path, facts)))
    except OSError as exc:  # a read-only model folder: checked or made again next time
        log.info("cannot stamp %s: %s", path, exc)
