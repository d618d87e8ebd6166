"""Converting the bundled GGUF to a faster quantization, once, beside it in the cache.

The bundled Qwen2.5-Coder-0.5B ships as Q4_K_M. llama.cpp's CPU kernels for IQ4_NL
are faster here (2-core AMD EPYC, AVX-512, one thread; ``python -m bench.llm_quant``):
first token 139 ms against 229 ms, 32 ms a token against 38 ms (other runs: 28
against 47). The cost: perplexity 19.9 against 18.9 on this project's README
(Q4_0, as fast, was 21.4).
Converting from Q4_K_M rather than from the original weights loses a little more
than a direct IQ4_NL would; nothing else ships in a package.

The conversion takes a few seconds and writes through a temporary file, so a crash
never leaves half a model; a stamp records what it was made from.
"""

from __future__ import annotations

import ctypes
import logging
import os
import tempfile
from pathlib import Path
from typing import Literal

from services.common.errors import StartupError
from services.llm import stamps

log = logging.getLogger(__name__)

Quant = Literal["iq4_nl", "q4_k_m"]
ORIGINAL: Quant = "q4_k_m"


MADE = ".made"


def _facts(source_sha256: str, quant: str) -> dict[str, object]:
    import llama_cpp

    return {"source_sha256": source_sha256, "quant": quant, "llama_cpp": llama_cpp.__version__}


def requantized(source: Path, source_sha256: str, quant: Quant) -> Path:
    """``source`` as ``quant``: itself for the original, else the converted file
    beside it (made now unless a current one is there)."""
    if quant == ORIGINAL:
        return source
    dest = source.with_name(f"{source.stem.removesuffix('-' + ORIGINAL)}-{quant}.gguf")
    facts = _facts(source_sha256, quant)
    if dest.is_file() and stamps.is_stamped(dest, MADE, facts):
        return dest
    log.info("converting %s to %s (once)", source.name, quant.upper())
    _quantize(source, dest, quant)
    stamps.write_stamp(dest, MADE, facts)
    return dest


def _quantize(source: Path, dest: Path, quant: Quant) -> None:
    try:
        import llama_cpp
    except ImportError as exc:
        raise StartupError("llama-cpp-python is not installed: run `make install`") from exc
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params.allow_requantize = True  # from Q4_K_M: the only weights that ship
    params.nthread = os.cpu_count() or 1
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        failed = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if failed:
            raise StartupError(f"llama.cpp could not convert {source} to {quant} (code {failed})")
        tmp.chmod(0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
