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
- ``{"type": "latency", "turn_id": N, "stt_final_ms", "llm_first_token_ms",
  "tts_first_audio_ms", "first_audio_out_ms"}``: milliseconds from the end of the
  user's speech (``SpeechEnded.at``) to each step reaching the edge, on the edge's
  clock; -1 for a step not seen. Also published as ``TurnLatency`` on ``va.state``.
"""

from __future__ import annotations

import json
from typing import Any

from proto import messages as m
from services.edge.latency import Latency

Event = dict[str, Any]


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


def latency(figures: Latency) -> Event:
    return {
        "type": "latency",
        "turn_id": figures.turn_id,
        "stt_final_ms": figures.stt_final_ms,
        "llm_first_token_ms": figures.llm_first_token_ms,
        "tts_first_audio_ms": figures.tts_first_audio_ms,
        "first_audio_out_ms": figures.first_audio_out_ms,
    }
