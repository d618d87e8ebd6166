"""Conversations that can leave this replica with their history and go on on another.

A draining turns replica gives each session back to the edge with its history
(``Handover``); the replica the edge assigns next adopts it. Plain logic, no NATS.
"""

from __future__ import annotations

from proto.messages import ChatMessage
from services.turns.conversation import ConversationConfig, Conversations
from services.turns.conversation.session import Session


class HandedOverSession(Session):
    """A session taken over from another replica: its history goes on, no greeting."""

    def __init__(self, session_id: str, config: ConversationConfig, now: float, history: list[ChatMessage]):
        super().__init__(session_id, config, now)
        # The old turn ids did not travel: numbering the messages below 0 keeps their
        # order and puts every turn to come (the edge numbers them from 1) after them.
        for turn_id, message in enumerate(history, start=-len(history)):
            if message.role == "user":
                self._history.add_user(turn_id, message.content)
            elif message.role == "assistant":
                self._history.add_assistant(turn_id, message.content, interrupted=message.interrupted)


class HandoverConversations(Conversations):
    def release(self, session_id: str) -> list[ChatMessage]:
        """Forget the session here; its history, for the next owner."""
        session = self._sessions.pop(session_id, None)
        return session.history if session is not None else []

    def adopt(self, session_id: str, history: list[ChatMessage], now: float) -> None:
        """Go on with a session another replica gave back (a session known here stays)."""
        if session_id not in self._sessions:
            self._sessions[session_id] = HandedOverSession(session_id, self._config, now, history)
