"""Per-turn latency on the edge's clock: pure bookkeeping, times passed in.

Every figure is milliseconds from the end of the user's speech (the last voiced
moment, ``SpeechEnded.at``) to the first sign of each step reaching the edge: the
final transcript, the first LLM token, the first synthesized audio, the first
frame of the reply handed to WebRTC. A step not seen is reported as -1. A step
started speculatively at the first silent frame comes out shorter than the
endpointing silence (the reply was ready before the end of the turn was confirmed);
the turn is the confirmed generation, so the reference is the end of all the speech.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

NOT_SEEN = -1.0


@dataclass(frozen=True)
class Latency:
    turn_id: int
    stt_final_ms: float
    llm_first_token_ms: float
    tts_first_audio_ms: float
    first_audio_out_ms: float


@dataclass
class _Marks:
    speech_end: float | None = None
    stt_final: float | None = None
    llm_first_token: float | None = None
    tts_first_audio: float | None = None
    reported: bool = False


class LatencyTracker:
    """First-seen times per turn; a report once the reply's first audio goes out."""

    def __init__(self, keep_turns: int = 16) -> None:
        self._turns: OrderedDict[int, _Marks] = OrderedDict()
        self._keep = keep_turns

    def _marks(self, turn_id: int) -> _Marks:
        marks = self._turns.get(turn_id)
        if marks is None:
            marks = self._turns[turn_id] = _Marks()
            while len(self._turns) > self._keep:
                self._turns.popitem(last=False)
        return marks

    def speech_ended(self, turn_id: int, at: float) -> None:
        self._marks(turn_id).speech_end = at

    def stt_final(self, turn_id: int, now: float) -> None:
        marks = self._marks(turn_id)
        marks.stt_final = marks.stt_final if marks.stt_final is not None else now

    def llm_token(self, turn_id: int, now: float) -> None:
        marks = self._marks(turn_id)
        marks.llm_first_token = marks.llm_first_token if marks.llm_first_token is not None else now

    def tts_audio(self, turn_id: int, now: float) -> None:
        marks = self._marks(turn_id)
        marks.tts_first_audio = marks.tts_first_audio if marks.tts_first_audio is not None else now

    def audio_out(self, turn_id: int, now: float) -> Latency | None:
        """The turn's figures when its first audio leaves; None for a turn
        without a user utterance (the greeting) or one already reported."""
        marks = self._turns.get(turn_id)
        if marks is None or marks.speech_end is None or marks.reported:
            return None
        marks.reported = True
        end = marks.speech_end

        def ms(t: float | None) -> float:
            return NOT_SEEN if t is None else round((t - end) * 1000, 1)

        return Latency(
            turn_id, ms(marks.stt_final), ms(marks.llm_first_token), ms(marks.tts_first_audio), ms(now)
        )
