"""JSON events the edge sends the browser on the data channel ``events``.

The client creates the channel (``pc.createDataChannel("events")``) before its
offer; the edge sends one JSON object per message, never expects a reply:

- ``{"type": "session", "session_id": "..."}`` once, when the call is up: the id
  every bus message about this call carries (for logs and tests).
- ``{"type": "transcript", "turn_id": N, "text": "...", "final": false|true,
  "speculative": false|true}`` what the user is saying: partials replace each
  other, the final closes turn N. A speculative final (the user paused, the end
  of the turn is not decided) comes with ``final: false, speculative: true``.
- ``{"type": "agent_text", "turn_id": N, "text": "<token delta>", "final": false}``
  the agent's reply as the LLM writes it; append the deltas. A last event with
  ``"text": "", "final": true`` (plus ``"cancelled"``) closes the reply.
- ``{"type": "state", "state": "listening"|"thinking"|"speaking"}`` the agent's state.
- ``{"type": "user_started_speaking", "turn_id": N, "continues": P}`` and
  ``{"type": "user_stopped_speaking", "turn_id": N}``: the edge's VAD decisions.
  ``continues`` > 0: the user resumed after a pause in generation P, and the
  utterance goes on as N (show it in P's place); 0 for a new utterance.
  The agent's text of a turn whose end is not confirmed is held back: the
  browser never sees a speculative reply that was discarded.
- ``{"type": "agent_started_speaking", "turn_id": N, "interrupted": false}`` the first
  frame of reply N went out; ``{"type": "agent_stopped_speaking", "turn_id": N,
  "interrupted": true|false, "heard_text": "..."}`` its playout ended (cut off or done).
- ``{"type": "agent_paused", "turn_id": N}`` the user's speech over reply N
  silenced it (services/edge/barge_in.py): a pause, not yet a cut. It ends with
  ``{"type": "agent_resumed", "turn_id": N, "reason": "says nothing"|"timeout"}``
  (a false interruption: the voice goes on where it stopped), or with
  ``interrupted`` (the user said words), or with ``agent_stopped_speaking`` (a
  Cancel from the bus, or a newer reply, ended it meanwhile).
- ``{"type": "interrupted", "turn_id": N, "heard_text": "..."}`` the user's speech
  cut reply N off (barge-in, services/edge/interruption.py); sent just before
  its ``agent_stopped_speaking``. A Cancel from the bus does not send it.
- ``{"type": "latency", "turn_id": N, "stt_final_ms", "llm_first_token_ms",
  "tts_first_audio_ms", "first_audio_out_ms"}``: milliseconds from the end of the
  user's speech (``SpeechEnded.at``) to each step reaching the edge, on the edge's
  clock; -1 for a step not seen. Also published as ``TurnLatency`` on ``va.state``.

The same seven speaking events (``user_started_speaking``, ``user_stopped_speaking``,
``agent_started_speaking``, ``agent_stopped_speaking``, ``agent_paused``,
``agent_resumed``, ``interrupted``) flow in code through ``EdgeSession.hooks``:
``session.hooks.on("interrupted", callback)`` calls ``callback(event)`` with the
same dict, whether or not a data channel is open.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from proto import messages as m
from services.edge.latency import Latency

log = logging.getLogger(__name__)

Event = dict[str, Any]
Hook = Callable[[Event], None]
HOOK_EVENTS = frozenset(
    {
        "user_started_speaking",
        "user_stopped_speaking",
        "agent_started_speaking",
        "agent_stopped_speaking",
        "agent_paused",
        "agent_resumed",
        "interrupted",
    }
)


class Hooks:
    """Callbacks for the speaking events of one session, called in order."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Hook]] = {}

    def on(self, name: str, callback: Hook) -> None:
        if name not in HOOK_EVENTS:
            raise ValueError(f"no hook {name!r}; one of {sorted(HOOK_EVENTS)}")
        self._callbacks.setdefault(name, []).append(callback)

    def emit(self, event: Event) -> None:
        for callback in self._callbacks.get(str(event.get("type")), []):
            try:
                callback(event)
            except Exception:  # a broken hook must not break the call
                log.exception("hook for %s failed", event.get("type"))


def encode(event: Event) -> str:
    return json.dumps(event, separators=(",", ":"))


def from_bus(message: Any) -> Event | None:
    """The browser event for a bus message the session subscribes to, if any."""
    match message:
        case m.TranscriptPartial(turn_id=turn, text=text):
            return {"type": "transcript", "turn_id": turn, "text": text, "final": False, "speculative": False}
        case m.TranscriptFinal(turn_id=turn, text=text, speculative=speculative):
            return {
                "type": "transcript",
                "turn_id": turn,
                "text": text,
                "final": not speculative,
                "speculative": speculative,
            }
        case m.LlmToken(turn_id=turn, text=text):
            return {"type": "agent_text", "turn_id": turn, "text": text, "final": False}
        case m.LlmDone(turn_id=turn, cancelled=cancelled):
            return {"type": "agent_text", "turn_id": turn, "text": "", "final": True, "cancelled": cancelled}
        case m.AgentState(state=state):
            return {"type": "state", "state": state}
    return None


def session(session_id: str) -> Event:
    return {"type": "session", "session_id": session_id}


def user_started(turn_id: int, continues: int = 0) -> Event:
    return {"type": "user_started_speaking", "turn_id": turn_id, "continues": continues}


def user_stopped(turn_id: int) -> Event:
    return {"type": "user_stopped_speaking", "turn_id": turn_id}


def agent_started(turn_id: int) -> Event:
    return {"type": "agent_started_speaking", "turn_id": turn_id, "interrupted": False}


def agent_stopped(turn_id: int, interrupted: bool, heard_text: str) -> Event:
    return {
        "type": "agent_stopped_speaking",
        "turn_id": turn_id,
        "interrupted": interrupted,
        "heard_text": heard_text,
    }


def agent_paused(turn_id: int) -> Event:
    return {"type": "agent_paused", "turn_id": turn_id}


def agent_resumed(turn_id: int, reason: str) -> Event:
    return {"type": "agent_resumed", "turn_id": turn_id, "reason": reason}


def interrupted(turn_id: int, heard_text: str) -> Event:
    return {"type": "interrupted", "turn_id": turn_id, "heard_text": heard_text}


def latency(figures: Latency) -> Event:
    return {
        "type": "latency",
        "turn_id": figures.turn_id,
        "stt_final_ms": figures.stt_final_ms,
        "llm_first_token_ms": figures.llm_first_token_ms,
        "tts_first_audio_ms": figures.tts_first_audio_ms,
        "first_audio_out_ms": figures.first_audio_out_ms,
    }
