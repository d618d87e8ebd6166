"""Settings of the edge service (environment variables prefixed ``EDGE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import ServiceSettings
from services.edge.completeness import DEFAULT_TRAILING_WORDS


def split_list(value: str) -> list[str]:
    """A comma-separated environment value as a list, blanks dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EDGE_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    max_offer_bytes: int = Field(default=64 * 1024, ge=1024)
    max_sessions: int = Field(default=20, ge=1)
    # Comma lists kept as strings: pydantic-settings would parse a list as JSON.
    # Empty ICE servers: host candidates only, never a public STUN server by default.
    ice_servers: str = ""
    # Credentials for TURN servers in ice_servers (all of them), if needed.
    ice_username: str = ""
    ice_credential: str = ""
    # Empty: aioice's own discovery (which skips 127.0.0.1).
    ice_host_addresses: str = ""
    # A session that has not connected by then is closed, freeing its slot.
    connect_timeout_s: float = Field(default=20.0, gt=0)
    # How long SessionStarted waits for the client's data channel to open, so
    # the first events (the greeting's text) are not lost.
    datachannel_wait_ms: int = Field(default=1000, ge=0)

    # Microphone packets aiortc's receive jitter buffer waits for before it decodes
    # one (services/edge/jitter.py): 0 = none, each packet as it arrives; 1 = until the
    # next proves it complete (20 ms); aiortc's own 4 adds 80 ms to every frame on its
    # way to the VAD.
    receive_jitter_frames: int = Field(default=0, ge=0, le=8)

    vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    # Silero's usual hysteresis: a frame counts as silence below this, so speech
    # hovering around the threshold does not end an utterance.
    vad_neg_threshold: float = Field(default=0.35, gt=0, lt=1)
    min_speech_ms: int = Field(default=100, ge=20)
    preroll_ms: int = Field(default=300, ge=0)
    # The silence that ends a turn adapts to its transcript (services/edge/completeness.py):
    # this one when the transcript says nothing either way (or there is none yet),
    endpoint_silence_ms: int = Field(default=400, ge=20)
    # this one when it reads as a finished sentence or question,
    endpoint_silence_complete_ms: int = Field(default=250, ge=20)
    # and this one when it trails off on one of endpoint_trailing_words or "...", ",".
    endpoint_silence_incomplete_ms: int = Field(default=900, ge=20)
    endpoint_trailing_words: str = ",".join(DEFAULT_TRAILING_WORDS)
    # Silence before the edge announces a pause (SpeechPaused) so that stt, the
    # llm and tts start on the turn speculatively; 20 = the first silent frame,
    # 0 = no speculation (everything waits for the end of the turn).
    speculate_after_ms: int = Field(default=20, ge=0)
    max_utterance_ms: int = Field(default=15000, ge=500)

    # Barge-in (services/edge/interruption.py): user speech cuts the agent's audio
    # only when interruptions are allowed (here and by the chunk playing), after
    # this much sustained voiced speech,
    allow_interruptions: bool = True
    interrupt_speech_ms: int = Field(default=300, ge=20)
    # and, above 0, once the utterance's partial transcript has this many words.
    interrupt_min_words: int = Field(default=0, ge=0)
    # What a cut does (services/edge/barge_in.py): the decision comes before anyone
    # knows what was said, so the agent's voice only pauses. Words in the
    # utterance's transcript make it a cut (Cancel); a final that says nothing
    # ("mhm", a cough), or this long after the user stopped speaking with no words,
    # resumes the voice where it stopped. 0 = cut at once, as the decision fires.
    false_interruption_timeout_ms: int = Field(default=1500, ge=0)
    # Let the agent finish the sentence it is in (estimated from the chunk's text)
    # before it goes silent, sounding less abrupt; never longer than the max.
    interrupt_finish_sentence: bool = False
    interrupt_finish_sentence_max_ms: int = Field(default=2000, ge=0)

    # Playout waits this long for a missing (chunk_index, part) before skipping
    # it, so one lost piece never stalls the agent's voice.
    reorder_wait_ms: int = Field(default=300, ge=0)

    @classmethod
    def from_env(cls) -> Settings:
        # Same as Settings(); without the pydantic mypy plugin, mypy would take the
        # base's aliased fields (NATS_URL, LOG_LEVEL) for required arguments.
        return cls.model_validate({})

    @property
    def ice_server_urls(self) -> list[str]:
        return split_list(self.ice_servers)

    @property
    def ice_host_address_list(self) -> list[str]:
        return split_list(self.ice_host_addresses)

    @property
    def trailing_word_list(self) -> list[str]:
        return split_list(self.endpoint_trailing_words)
