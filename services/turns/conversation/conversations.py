"""Every session this replica serves, keyed by session id."""

from __future__ import annotations

import logging

from proto import messages as m
from proto.subjects import LLM_STREAM, PLAYOUT, SESSION, TRANSCRIPT
from services.turns.conversation.config import ConversationConfig
from services.turns.conversation.effects import Drop, Effect
from services.turns.conversation.session import Session

log = logging.getLogger(__name__)


class Conversations:
    """Routes messages to sessions; each method returns the effects to apply."""

    def __init__(self, config: ConversationConfig) -> None:
        self._config = config
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def session(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def on_session(self, msg: m.SessionMsg, now: float) -> list[Effect]:
        if isinstance(msg, m.SessionEnded):
            self._sessions.pop(msg.session_id, None)
            return []
        if msg.session_id in self._sessions:
            return [Drop(SESSION, "duplicate")]
        session = self._sessions[msg.session_id] = Session(msg.session_id, self._config, now)
        session.greet(now)
        return session.drain()

    def on_vad(self, msg: m.VadMsg, now: float) -> list[Effect]:
        session = self._get_or_adopt(msg.session_id, now)
        session.on_vad(msg, now)
        return session.drain()

    def on_transcript(self, msg: m.TranscriptMsg, now: float) -> list[Effect]:
        session = self._get_or_adopt(msg.session_id, now)
        session.on_transcript(msg, now, TRANSCRIPT)
        return session.drain()

    def on_llm(self, msg: m.LlmStreamMsg, now: float) -> list[Effect]:
        session = self._sessions.get(msg.session_id)
        if session is None:
            return [Drop(LLM_STREAM, "unknown_session")]
        session.on_llm(msg, now)
        return session.drain()

    def on_playout(self, msg: m.PlayoutMsg, now: float) -> list[Effect]:
        session = self._sessions.get(msg.session_id)
        if session is None:
            return [Drop(PLAYOUT, "unknown_session")]
        session.on_playout(msg, now)
        return session.drain()

    def tick(self, now: float) -> list[Effect]:
        """Time-driven work: reply timeouts, forgetting idle sessions."""
        effects: list[Effect] = []
        for session_id, session in list(self._sessions.items()):
            if now - session.last_active >= self._config.session_idle_timeout_s:
                log.info("forgetting idle session %s", session_id)
                del self._sessions[session_id]
                continue
            session.tick(now)
            effects.extend(session.drain())
        return effects

    def _get_or_adopt(self, session_id: str, now: float) -> Session:
        # A user speaking in a session we do not know (this replica restarted, or
        # SessionStarted was lost) still gets answered, only without a greeting.
        session = self._sessions.get(session_id)
        if session is None:
            log.info("adopting session %s seen without SessionStarted", session_id)
            session = self._sessions[session_id] = Session(session_id, self._config, now)
        return session
