"""A session's chat history: ordered by turn, bounded, only what was said aloud."""

from __future__ import annotations

import bisect

from proto.messages import ChatMessage

# Within one turn the user spoke before the agent answered.
_USER, _ASSISTANT = 0, 1


class History:
    """Messages kept in turn order, at most ``max_messages`` of them.

    Ordering by ``(turn_id, role)`` rather than by arrival matters: the edge can
    report what was heard of reply N after utterance N+1 is already in, and that
    reply still belongs before N+1.
    """

    def __init__(self, max_messages: int) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self._max = max_messages
        self._keys: list[tuple[int, int]] = []
        self._messages: list[ChatMessage] = []

    def add_user(self, turn_id: int, text: str) -> None:
        self._insert((turn_id, _USER), ChatMessage("user", text))

    def add_assistant(self, turn_id: int, text: str, *, interrupted: bool = False) -> None:
        self._insert((turn_id, _ASSISTANT), ChatMessage("assistant", text, interrupted))

    def messages(self) -> list[ChatMessage]:
        return list(self._messages)

    def __len__(self) -> int:
        return len(self._messages)

    def _insert(self, key: tuple[int, int], message: ChatMessage) -> None:
        at = bisect.bisect_right(self._keys, key)
        self._keys.insert(at, key)
        self._messages.insert(at, message)
        # Older messages are never sent again, so they are not kept either.
        overflow = len(self._messages) - self._max
        if overflow > 0:
            del self._keys[:overflow]
            del self._messages[:overflow]
