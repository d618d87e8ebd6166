"""Output of a turn whose end the edge has not confirmed: held, then played or dropped.

Pure bookkeeping, no clock. While the user's generation N is open (speaking or
paused), anything the agent produces for N is speculative: its AudioChunks and
its browser events (the reply's text) wait here. The edge's own endpointing
decides: ``confirm(N)`` hands them over to be played and shown at once;
``discard(N)`` (the user went on speaking) drops them, so a speculative reply
is never heard nor seen. Output of any other turn (the greeting, a confirmed
reply still streaming) passes through untouched.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from proto.messages import AudioChunk

Held = AudioChunk | dict[str, Any]  # a reply's audio piece, or a browser event
VOID_MEMORY = 16  # discarded generations remembered, for their late output


class HeldTurn:
    """The one open generation of a session and what was held for it."""

    def __init__(self) -> None:
        self._open: int | None = None
        self._held: list[Held] = []
        self._void: deque[int] = deque(maxlen=VOID_MEMORY)

    @property
    def open_turn(self) -> int | None:
        return self._open

    def open(self, turn_id: int, continues: int = 0) -> list[Held]:
        """Generation ``turn_id`` starts; anything held for an older one is dropped.
        With ``continues``, that generation is void: its later output is dropped too."""
        dropped, self._held = self._held, []
        self._open = turn_id
        if continues:
            self._void.append(continues)
        return dropped

    def void(self, turn_id: int) -> bool:
        """``turn_id`` was discarded: whatever still comes for it is never shown."""
        return turn_id in self._void

    def holds(self, turn_id: int) -> bool:
        """Output of ``turn_id`` must wait for the end of the user's turn."""
        return turn_id == self._open

    def hold(self, turn_id: int, item: Held) -> bool:
        """Keep ``item`` if its turn is unconfirmed; False: pass it on now."""
        if not self.holds(turn_id):
            return False
        self._held.append(item)
        return True

    def confirm(self, turn_id: int) -> list[Held]:
        """The user's turn ``turn_id`` ended: its held output, in arrival order."""
        if turn_id != self._open:
            return []
        released, self._held = self._held, []
        self._open = None
        return released

    def discard(self, turn_id: int) -> list[Held]:
        """Drop what was held for ``turn_id`` or older (the turn stays open)."""
        if self._open is None or self._open > turn_id:
            return []
        dropped, self._held = self._held, []
        return dropped
