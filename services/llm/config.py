"""Settings of the llm service (environment variables prefixed ``LLM_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import ServiceSettings
from services.common.persona import DEFAULT_SYSTEM_PROMPT
from services.llm.chunker import CHUNK_MAX_WORDS, FIRST_CHUNK_WORDS

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "voice-agent" / "models"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLM_", extra="ignore")

    http_port: int = 8093

    engine: Literal["llama", "openai"] = "llama"
    # The bundled GGUF is joined into this folder once and verified by sha256.
    model_cache_dir: Path = DEFAULT_CACHE_DIR
    # Any other GGUF file; it is hashed only when model_sha256 is given.
    model_path: Path | None = None
    model_sha256: str = ""
    # The bundled model's quantization: "iq4_nl" is converted once from the shipped
    # Q4_K_M (services/llm/requantize.py). It is faster here (voice-to-voice p50 915 ms
    # against 1022-1103 in five runs of `make bench`, first token 137 against ~230 ms),
    # at a perplexity 5 % higher and with shorter replies; "q4_k_m" keeps the shipped
    # file. Not applied to LLM_MODEL_PATH.
    quant: Literal["iq4_nl", "q4_k_m"] = "iq4_nl"
    context: int = Field(default=2048, ge=256)
    # Threads that generate tokens. One: with two on a 2-core machine that also runs
    # stt, tts, the edge (and here a browser), a generation step waits at every
    # barrier for whichever thread was descheduled (python -m bench.llm_threads: 9.4
    # tokens/s with two against 20.2 with one while another process kept a core busy).
    threads: int = Field(default=1, ge=1)
    # Threads that evaluate the prompt; 0 = as many as threads. One, for the same reason:
    # a prompt is evaluated while stt decodes on the other core (priming at the pause,
    # the request after it), and two then stall each other (bench runs 20261124-074637
    # and -074948: primes of ~8 tokens took ~250-300 ms with either, LLM first token
    # p50 177 ms with two against 126 ms with one).
    threads_batch: int = Field(default=1, ge=0)
    # Threads that evaluate a request's prompt (never fewer than threads_batch): the
    # user waits on it, and stt's final is done by then, so the other core has only the
    # edge on it (python -m bench.llm_request_threads: 211 -> 144 ms with it a quarter
    # busy, 214 -> 187 half busy, but 175 -> 262 fully busy). Primes and drafts,
    # evaluated while stt decodes, keep threads_batch. 1 where sessions keep both busy.
    request_threads_batch: int = Field(default=2, ge=1)
    max_tokens: int = Field(default=150, ge=1)  # caps each request's own max_tokens
    temperature: float = Field(default=0.6, ge=0.0, le=2.0)
    # Unset: every reply samples from a fresh random seed. Set: every reply uses this one,
    # so a conversation replayed on a fresh process gets the same replies.
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    warmup: bool = True
    # Keep equal to TURNS_SYSTEM_PROMPT: the warm-up leaves this prefix in the KV cache.
    warmup_system_prompt: str = DEFAULT_SYSTEM_PROMPT

    # services/llm/chunker.py says why three; the second chunk ends within four times as many.
    first_chunk_words: int = Field(default=FIRST_CHUNK_WORDS, ge=1)
    chunk_max_words: int = Field(default=CHUNK_MAX_WORDS, ge=1)
    # services/llm/draft.py: a reply generated ahead at the user's pause, this many
    # tokens (0 = no drafts), waits this long for the request that adopts it (it
    # comes ~0.2-0.4 s later).
    draft_tokens: int = Field(default=1, ge=0)
    draft_timeout_s: float = Field(default=2.0, gt=0)

    # vLLM's default; the edge already uses 8080 (llama.cpp server's default).
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_model: str = "default"
    openai_api_key: SecretStr = SecretStr("")
    openai_timeout: float = Field(default=30.0, gt=0)

    @field_validator("seed", mode="before")
    @classmethod
    def _empty_seed_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("model_path", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        # LLM_MODEL_PATH= (set but empty) means "use the bundled model", not the cwd.
        return None if value == "" else value


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, ``overrides`` (field names) taking precedence."""
    return Settings(**overrides)
