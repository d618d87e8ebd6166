"""The agent's side of one turn: a reply from request to the end of playout."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from proto.messages import LlmDone

AgentStateName = Literal["listening", "thinking", "speaking"]


class Phase(StrEnum):
    PENDING = "pending"  # requested; llm and tts at work, nothing audible yet
    PLAYING = "playing"  # the edge is playing it


@dataclass
class Reply:
    turn_id: int
    requested_at: float
    # Fixed text (the greeting): no llm to wait for, so the agent counts as speaking.
    scripted: bool = False
    # False: its audio may not be cut (the edge plays it out), so a newer
    # utterance does not cancel it once it plays.
    interruptible: bool = True
    # Requested on a speculative final: the user may still go on. ``user_text`` is
    # the pending user message, history only once the end of the turn is confirmed.
    speculative: bool = False
    user_text: str = ""
    phase: Phase = Phase.PENDING
    tokens: list[str] = field(default_factory=list)
    generated: str = ""

    @property
    def generated_text(self) -> str:
        return self.generated or "".join(self.tokens)

    @property
    def agent_state(self) -> AgentStateName:
        if self.speculative:
            return "listening"  # the user has only paused
        if self.phase is Phase.PLAYING or self.scripted:
            return "speaking"
        return "thinking"

    def add_token(self, text: str) -> None:
        self.tokens.append(text)

    def finish_generation(self, done: LlmDone) -> bool:
        """Record the llm's final text; True if this reply will never be heard."""
        if done.text:
            self.generated = done.text
        silent = bool(done.error) or done.cancelled or not self.generated_text.strip()
        return silent and self.phase is Phase.PENDING

    def playout_started(self) -> None:
        self.phase = Phase.PLAYING
