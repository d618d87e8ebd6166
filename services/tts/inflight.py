"""What a draining tts replica waits for: the TextChunks it accepted and has not spoken.

Kept beside the Speaker, from what the adapter sees: a chunk is done once its
last audio piece (``final_part``) is out, or moot once a Cancel, a newer turn of
its session (the Speaker drops older turns) or the end of the session came.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from proto.messages import AudioChunk, TextChunk
from services.common.inflight import InFlight

Key = tuple[str, int, int]  # (session, turn, chunk index)


class ChunksInFlight:
    def __init__(self) -> None:
        self._open: InFlight[Key] = InFlight()

    def __len__(self) -> int:
        return len(self._open)

    def accepted(self, chunk: TextChunk) -> None:
        sid, turn = chunk.session_id, chunk.turn_id
        self._open.discard(lambda k: k[0] == sid and k[1] < turn)
        self._open.add((sid, turn, chunk.index))

    def spoken(self, audio: AudioChunk) -> None:
        if audio.final_part:
            self._open.done((audio.session_id, audio.turn_id, audio.chunk_index))

    def cancelled(self, session_id: str, upto_turn: int) -> None:
        self._open.discard(lambda k: k[0] == session_id and k[1] <= upto_turn)

    def ended(self, session_id: str) -> None:
        self._open.discard(lambda k: k[0] == session_id)

    async def wait_idle(self, deadline: float, clock: Callable[[], float] = time.monotonic) -> bool:
        return await self._open.wait_idle(deadline, clock)
