"""The playout buffer: the agent's audio in order, cancellable, with what was heard.

Pure logic, no clock: the caller passes ``now`` and pulls one frame at a time.
AudioChunks of a turn are played in order of ``(chunk_index, part)``; a piece
that arrives early waits, and a missing piece is skipped after ``reorder_wait``
seconds so one lost message cannot stall the voice. Each turn gets its own
resampler (created on its first piece) so pieces join without clicks.

A newer turn supersedes the playing one; chunks of a cancelled, finished or
older turn are dropped. ``heard_text`` is the text of every chunk whose audio
started playing: all of them when the turn ends on its own, those begun so far
when it is cut off.

An uninterruptible chunk (``allow_interruptions`` false) that has begun plays
to its end: a cancel of its turn, or a newer turn's audio, lets it finish what
is queued of its uninterruptible pieces first. The newer turn's pieces wait
meanwhile and play right after.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from proto.messages import AudioChunk

Pcm = npt.NDArray[np.int16]


class Resample(Protocol):
    def __call__(self, pcm: bytes, sample_rate: int, last: bool) -> Pcm:
        """PCM16 mono at ``sample_rate`` -> PCM16 mono at the output rate;
        ``last`` flushes what the filter still holds."""
        ...


@dataclass(frozen=True)
class TurnStarted:
    turn_id: int


@dataclass(frozen=True)
class TurnFinished:
    turn_id: int
    heard_text: str
    interrupted: bool


PlayoutEvent = TurnStarted | TurnFinished


@dataclass
class _Segment:
    samples: Pcm
    chunk_index: int
    allow_interruptions: bool
    offset: int = 0


@dataclass
class _Turn:
    turn_id: int
    resample: Resample
    pending: dict[tuple[int, int], AudioChunk] = field(default_factory=dict)
    expected: tuple[int, int] = (0, 0)
    waiting_since: float | None = None
    queue: deque[_Segment] = field(default_factory=deque)
    texts: dict[int, str] = field(default_factory=dict)
    started_chunks: list[int] = field(default_factory=list)
    all_released: bool = False  # the last_chunk piece is in the queue
    started: bool = False
    interruptible: bool = True
    stopping: bool = False  # cancelled while uninterruptible: ends after that audio
    chunk_done: bool = True  # the last piece queued ended its text chunk

    @property
    def protected(self) -> bool:
        """Its audio has begun and the chunk playing must not be cut."""
        return self.started and not self.interruptible

    def heard_text(self) -> str:
        words = (self.texts.get(index, "").strip() for index in self.started_chunks)
        return " ".join(text for text in words if text)


class PlayoutBuffer:
    """Orders, resamples and plays out one session's AudioChunks."""

    def __init__(
        self,
        resampler_factory: Callable[[], Resample],
        frame_samples: int = 960,
        reorder_wait: float = 0.3,
    ) -> None:
        self._factory = resampler_factory
        self.frame_samples = frame_samples
        self.reorder_wait = reorder_wait
        self._turn: _Turn | None = None
        self._newest = -1  # newest turn accepted
        self._closed_upto = -1  # turns up to this one were cancelled or finished
        self._waiting: list[AudioChunk] = []  # a newer turn's pieces, behind a protected one

    @property
    def turn_id(self) -> int | None:
        """The turn being buffered or played, if any."""
        return self._turn.turn_id if self._turn else None

    @property
    def playing(self) -> bool:
        """Agent audio of a turn has started and the turn has not ended."""
        return self._turn is not None and self._turn.started

    @property
    def interruptible(self) -> bool:
        return self.playing and self._turn is not None and self._turn.interruptible

    def push(self, chunk: AudioChunk, now: float) -> tuple[bool, list[PlayoutEvent]]:
        """Queue ``chunk``; False when it belongs to a stale turn and was dropped.
        The events report a playing turn that this newer one superseded."""
        current = self._turn is not None and chunk.turn_id == self._turn.turn_id
        if chunk.turn_id <= self._closed_upto or (chunk.turn_id < self._newest and not current):
            return False, []
        events: list[PlayoutEvent] = []
        if self._turn is not None and chunk.turn_id > self._turn.turn_id and self._turn.protected:
            self._turn.stopping = True
            self._waiting.append(chunk)
            self._newest = chunk.turn_id
            return True, events
        if self._turn is None or chunk.turn_id > self._turn.turn_id:
            if self._turn is not None:
                events += self._flush(interrupted=True)
            self._turn = _Turn(chunk.turn_id, self._factory())
            self._newest = chunk.turn_id
        key = (chunk.chunk_index, chunk.part)
        if key < self._turn.expected or key in self._turn.pending:
            return False, events  # a duplicate, or a piece we already skipped
        self._turn.pending[key] = chunk
        self._release(now)
        return True, events

    def cancel(self, turn_id: int) -> list[PlayoutEvent]:
        """Stop ``turn_id`` and everything older at once (an uninterruptible
        chunk playing finishes first)."""
        self._closed_upto = max(self._closed_upto, turn_id)
        self._newest = max(self._newest, turn_id)
        self._waiting = [c for c in self._waiting if c.turn_id > turn_id]
        turn = self._turn
        if turn is not None and turn.turn_id <= turn_id:
            if turn.protected:
                turn.stopping = True
                return []
            return self._flush(interrupted=True)
        return []

    def next_frame(self, now: float) -> tuple[Pcm, list[PlayoutEvent]]:
        """The next ``frame_samples`` of output (silence when nothing plays)."""
        frame = np.zeros(self.frame_samples, dtype=np.int16)
        turn = self._turn
        if turn is None:
            return frame, []
        self._release(now)
        events: list[PlayoutEvent] = []
        filled = 0
        while turn.queue and filled < self.frame_samples:
            segment = turn.queue[0]
            if segment.offset == 0:
                self._begin_segment(turn, segment, events)
            take = min(self.frame_samples - filled, segment.samples.size - segment.offset)
            frame[filled : filled + take] = segment.samples[segment.offset : segment.offset + take]
            segment.offset += take
            filled += take
            if segment.offset >= segment.samples.size:
                turn.queue.popleft()
        if turn.all_released and not turn.queue:
            events += self._flush(interrupted=False)
        elif turn.stopping and self._stop_due(turn):
            events += self._flush(interrupted=True)
        if self._turn is None and self._waiting:
            events += self._resume(now)
        return frame, events

    def _stop_due(self, turn: _Turn) -> bool:
        """A stopping turn ends once its uninterruptible chunk is out: at a piece
        that may be cut, or with nothing queued and nothing more of it to come."""
        if turn.queue:
            return turn.queue[0].allow_interruptions
        return turn.chunk_done or turn.turn_id <= self._closed_upto

    def _resume(self, now: float) -> list[PlayoutEvent]:
        """The protected turn is over: the newer turn that waited takes its place."""
        waiting, self._waiting = self._waiting, []
        events: list[PlayoutEvent] = []
        for chunk in waiting:
            events += self.push(chunk, now)[1]
        return events

    def _begin_segment(self, turn: _Turn, segment: _Segment, events: list[PlayoutEvent]) -> None:
        if segment.chunk_index not in turn.started_chunks:
            turn.started_chunks.append(segment.chunk_index)
        turn.interruptible = segment.allow_interruptions
        if not turn.started and segment.samples.size:
            turn.started = True
            events.append(TurnStarted(turn.turn_id))

    def _release(self, now: float) -> None:
        """Move in-order pieces from ``pending`` to the play queue."""
        turn = self._turn
        while turn is not None and turn.pending and not turn.all_released:
            if turn.expected not in turn.pending:
                if turn.waiting_since is None:
                    turn.waiting_since = now
                if now - turn.waiting_since < self.reorder_wait:
                    return
                turn.expected = min(turn.pending)  # give up on the missing piece
            turn.waiting_since = None
            chunk = turn.pending.pop(turn.expected)
            self._enqueue(turn, chunk)

    def _enqueue(self, turn: _Turn, chunk: AudioChunk) -> None:
        if chunk.text:
            turn.texts[chunk.chunk_index] = chunk.text
        samples = turn.resample(chunk.pcm, chunk.sample_rate, chunk.last_chunk)
        turn.queue.append(_Segment(samples, chunk.chunk_index, chunk.allow_interruptions))
        turn.chunk_done = chunk.final_part
        if chunk.final_part:
            turn.expected = (chunk.chunk_index + 1, 0)
        else:
            turn.expected = (chunk.chunk_index, chunk.part + 1)
        if chunk.last_chunk:
            turn.all_released = True
            turn.pending.clear()

    def _flush(self, interrupted: bool) -> list[PlayoutEvent]:
        turn, self._turn = self._turn, None
        if turn is None:
            return []
        self._closed_upto = max(self._closed_upto, turn.turn_id)
        if not turn.started:
            return []  # nothing was heard: no playout to report
        return [TurnFinished(turn.turn_id, turn.heard_text(), interrupted)]
