"""The playout buffer: the agent's audio in order, cancellable, with what was heard.

Pure logic, no clock: the caller passes ``now`` and pulls one frame at a time.
AudioChunks of a turn are played in order of ``(chunk_index, part)``; a piece
that arrives early waits, and a missing piece is skipped after ``reorder_wait``
seconds so one lost message cannot stall the voice. Each turn gets its own
resampler (created on its first piece) so pieces join without clicks.

A newer turn supersedes the playing one; chunks of a cancelled, finished or
older turn are dropped. ``heard_text`` is what the user heard: the whole text of
every chunk when the turn ends on its own; when it is cut off, the chunks played
to their end plus, of the chunk cut mid-way, the words whose estimated end was
played (services/edge/alignment.py maps characters to samples in proportion).

``pause`` silences the turn (at once, or after some more samples: the end of a
sentence, ``until_sentence_end``) while keeping its audio and play position;
pieces that still arrive are queued. ``resume`` goes on from the same sample.
The first frame a pause makes silent (or partly) reports ``TurnPaused``.

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
from services.edge.alignment import heard_words, sentence_end

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


@dataclass(frozen=True)
class TurnPaused:
    """The pause asked for took effect: this frame and the next ones are silent."""

    turn_id: int


PlayoutEvent = TurnStarted | TurnFinished | TurnPaused


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
    # Per chunk_index: samples queued so far and samples played, for heard_text.
    samples: dict[int, int] = field(default_factory=dict)
    played: dict[int, int] = field(default_factory=dict)
    pause_in: int | None = None  # samples still to play before a pause; None: no pause
    paused: bool = False  # the pause took effect

    @property
    def protected(self) -> bool:
        """Its audio has begun and the chunk playing must not be cut."""
        return self.started and not self.interruptible

    def played_fraction(self, index: int) -> float:
        total = self.samples.get(index, 0)
        return self.played.get(index, 0) / total if total else 1.0

    def heard_text(self, cut: bool) -> str:
        """Every started chunk's text; when ``cut``, only the words played of each.
        A chunk whose later pieces never came counts on the samples it had."""
        words = (
            heard_words(self.texts.get(index, ""), self.played_fraction(index) if cut else 1.0)
            for index in self.started_chunks
        )
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

    @property
    def paused(self) -> bool:
        """A pause of the current turn is asked for or in effect."""
        return self._turn is not None and self._turn.pause_in is not None

    def pause(self, after: int = 0) -> None:
        """Silence the current turn after ``after`` more samples (0: from the next
        frame on), keeping its audio and position; a pending pause is replaced."""
        if self._turn is not None:
            self._turn.pause_in = max(0, after)
            self._turn.paused = False

    def resume(self) -> None:
        """Play the current turn on from the sample where it paused."""
        if self._turn is not None:
            self._turn.pause_in = None
            self._turn.paused = False

    def until_sentence_end(self, limit: int) -> int:
        """Samples from the play position to the estimated end of the sentence
        being played, at most ``limit``. No sentence end in the rest of the chunk:
        its end, plus the next queued chunk up to its first sentence end (or whole)
        unless that chunk is uninterruptible."""
        turn = self._turn
        if turn is None or not turn.queue:
            return 0
        index = turn.queue[0].chunk_index
        total, played = turn.samples.get(index, 0), turn.played.get(index, 0)
        end = sentence_end(turn.texts.get(index, ""), turn.played_fraction(index))
        if end is not None:
            return min(limit, max(0, round(end * total) - played))
        remaining = total - played
        following = next((seg for seg in turn.queue if seg.chunk_index != index), None)
        if following is not None and following.allow_interruptions:
            nxt = following.chunk_index
            end = sentence_end(turn.texts.get(nxt, ""), 0.0)
            remaining += round((1.0 if end is None else end) * turn.samples.get(nxt, 0))
        return min(limit, max(0, remaining))

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
        budget = self.frame_samples if turn.pause_in is None else min(self.frame_samples, turn.pause_in)
        filled = self._fill(turn, frame, budget, events)
        if turn.all_released and not turn.queue:
            events += self._flush(interrupted=False)
        elif turn.stopping and self._stop_due(turn):
            events += self._flush(interrupted=True)
        elif turn.pause_in is not None:
            turn.pause_in = max(0, turn.pause_in - filled)
            # Reported in the first frame the pause makes (partly) silent.
            if turn.pause_in == 0 and filled < self.frame_samples and not turn.paused:
                turn.paused = True
                events.append(TurnPaused(turn.turn_id))
        if self._turn is None and self._waiting:
            events += self._admit_waiting(now)
        return frame, events

    def _fill(self, turn: _Turn, frame: Pcm, budget: int, events: list[PlayoutEvent]) -> int:
        """Copy up to ``budget`` queued samples into ``frame``; how many were copied."""
        filled = 0
        while turn.queue and filled < budget:
            segment = turn.queue[0]
            if segment.offset == 0:
                self._begin_segment(turn, segment, events)
            take = min(budget - filled, segment.samples.size - segment.offset)
            frame[filled : filled + take] = segment.samples[segment.offset : segment.offset + take]
            segment.offset += take
            filled += take
            turn.played[segment.chunk_index] = turn.played.get(segment.chunk_index, 0) + take
            if segment.offset >= segment.samples.size:
                turn.queue.popleft()
        return filled

    def _stop_due(self, turn: _Turn) -> bool:
        """A stopping turn ends once its uninterruptible chunk is out: at a piece
        that may be cut, or with nothing queued and nothing more of it to come."""
        if turn.queue:
            return turn.queue[0].allow_interruptions
        return turn.chunk_done or turn.turn_id <= self._closed_upto

    def _admit_waiting(self, now: float) -> list[PlayoutEvent]:
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
        turn.samples[chunk.chunk_index] = turn.samples.get(chunk.chunk_index, 0) + samples.size
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
        return [TurnFinished(turn.turn_id, turn.heard_text(cut=interrupted), interrupted)]
