"""What an interruption does to the agent's voice, on virtual time: pause at once,
then cut on real words or resume on a final that says nothing or on the timeout;
the cut-at-once setting; finishing the sentence first; the settings."""

from __future__ import annotations

import numpy as np
import pytest

from proto.messages import AudioChunk
from services.edge.barge_in import BargeIn, BargeInConfig, Committed, OutEvent, Paused, Phase, Resumed
from services.edge.config import Settings
from services.edge.playout import PlayoutBuffer, TurnFinished, TurnStarted
from services.edge.tuning import barge_in_config

FRAME = 960
TEXT = "one two three four five six seven eight nine ten"  # 48 characters


def identity(pcm: bytes, sample_rate: int, last: bool) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16).copy()


def reply(turn: int, frames: int, text: str = TEXT, *, index: int = 0, last: bool = True) -> AudioChunk:
    """Samples 1, 2, 3 ... so a frame's first sample tells the play position."""
    start = index * 100_000 + 1
    pcm = (np.arange(start, start + FRAME * frames) % 30000).astype(np.int16)
    return AudioChunk(
        session_id="s", turn_id=turn, seq=0, chunk_index=index, part=0, pcm=pcm.tobytes(),
        sample_rate=48000, text=text, final_part=True, last_chunk=last,
    )  # fmt: skip


class Agent:
    """The controller over a buffer playing one reply, pulled on a virtual 20 ms clock."""

    def __init__(self, config: BargeInConfig | None = None, frames: int = 100, text: str = TEXT) -> None:
        self.buffer = PlayoutBuffer(lambda: identity)
        self.barge_in = BargeIn(self.buffer, config or BargeInConfig())
        self.buffer.push(reply(1, frames, text), 0.0)
        self.now = 0.0

    def play(self, frames: int) -> tuple[list[int], list[OutEvent]]:
        """Each frame's first sample (0 = silent) and the events, ``frames`` pulls on."""
        firsts: list[int] = []
        events: list[OutEvent] = []
        for _ in range(frames):
            frame, happened = self.barge_in.next_frame(self.now)
            firsts.append(int(frame[0]))
            events += happened
            self.now += 0.02
        return firsts, events

    def interrupt(self, onset_ago: float = 0.3) -> list[OutEvent]:
        return self.barge_in.interrupt(utterance=2, onset=self.now - onset_ago, now=self.now)


def test_the_voice_pauses_at_once_and_a_backchannel_final_resumes_it_in_place() -> None:
    agent = Agent()
    agent.play(10)
    assert agent.interrupt() == [] and agent.barge_in.busy
    firsts, events = agent.play(5)
    assert firsts == [0] * 5  # the very next frame is silent
    assert events == [Paused(1, pytest.approx(0.3))]  # type: ignore[arg-type]
    assert agent.barge_in.heard(2, "Mhm", final=False) == []  # a partial decides nothing
    assert agent.barge_in.heard(2, "(coughs) yeah, okay.", final=False) == []
    assert agent.barge_in.phase is Phase.PAUSED
    assert agent.barge_in.heard(2, "Mhm.", final=True) == [Resumed(1, "says nothing", was_paused=True)]
    firsts, events = agent.play(2)
    assert firsts == [10 * FRAME + 1, 11 * FRAME + 1] and events == []  # the same sample on
    assert not agent.barge_in.busy


def test_real_words_cut_the_paused_reply() -> None:
    agent = Agent()
    agent.play(50)  # 1 s of 2: half the words
    agent.interrupt()
    agent.play(3)
    heard = "one two three four five"
    assert agent.barge_in.heard(2, "Wait, stop", final=False) == [
        Committed(1, heard, stop_seconds=None),
        TurnFinished(1, heard, interrupted=True),
    ]
    assert agent.buffer.turn_id is None and agent.play(2)[0] == [0, 0]


def test_no_words_in_time_resumes_on_the_timeout() -> None:
    agent = Agent(BargeInConfig(resume_after=1.5))
    agent.play(10)
    agent.interrupt()
    agent.barge_in.user_speaking(False, agent.now)  # a cough: over by the decision
    firsts, events = agent.play(75)  # the frame going silent, then 1.48 s more
    assert set(firsts) == {0} and [type(e) for e in events] == [Paused]
    firsts, events = agent.play(1)  # 1.5 s after it went silent
    assert events == [Resumed(1, "timeout", was_paused=True)] and firsts == [10 * FRAME + 1]


def test_the_timeout_waits_while_the_user_goes_on_speaking() -> None:
    agent = Agent(BargeInConfig(resume_after=1.5))
    agent.play(10)
    agent.interrupt()
    for _ in range(150):  # 3 s of speech and no transcript yet (a busy recognizer)
        agent.barge_in.user_speaking(True, agent.now)
        _, events = agent.play(1)
        assert not any(isinstance(e, Resumed) for e in events)
    agent.barge_in.user_speaking(False, agent.now)
    stopped = agent.now
    _, events = agent.play(74)
    assert not any(isinstance(e, Resumed) for e in events)
    firsts, events = agent.play(2)  # 1.5 s after the user stopped
    assert events == [Resumed(1, "timeout", was_paused=True)] and firsts[-1] == 10 * FRAME + 1
    assert agent.now - stopped == pytest.approx(1.52)


def test_a_speculative_final_that_says_nothing_keeps_waiting() -> None:
    agent = Agent()
    agent.play(5)
    agent.interrupt()
    agent.play(2)
    assert agent.barge_in.heard(2, "Um", final=False) == []  # speculative: the user may go on
    assert agent.barge_in.heard(3, "Um, hold on", final=False)[0] == Committed(1, "", None)


def test_transcripts_of_an_older_utterance_do_not_count() -> None:
    agent = Agent()
    agent.play(5)
    agent.interrupt()
    agent.play(2)
    assert agent.barge_in.heard(1, "the question before", final=True) == []
    assert agent.barge_in.phase is Phase.PAUSED


def test_min_words_needs_that_many_content_words() -> None:
    agent = Agent(BargeInConfig(min_words=3))
    agent.play(5)
    agent.interrupt()
    agent.play(2)
    assert agent.barge_in.heard(2, "yeah stop it", final=False) == []  # two content words
    assert agent.barge_in.heard(2, "yeah stop it", final=True)[0] == Resumed(1, "says nothing", True)
    agent = Agent(BargeInConfig(min_words=3))
    agent.play(5)
    agent.interrupt()
    agent.play(2)
    assert isinstance(agent.barge_in.heard(2, "no stop it now", final=False)[0], Committed)


def test_words_heard_before_the_decision_cut_at_once() -> None:
    agent = Agent()
    agent.play(5)
    agent.barge_in.heard(2, "stop please", final=False)  # min_words: the partial came first
    events = agent.interrupt(onset_ago=0.5)
    assert events[0] == Committed(1, "", pytest.approx(0.5))  # type: ignore[arg-type]
    assert isinstance(events[1], TurnFinished)


def test_a_zero_timeout_cuts_at_the_decision() -> None:
    agent = Agent(BargeInConfig(resume_after=0))
    agent.play(30)
    events = agent.interrupt(onset_ago=0.32)
    assert events == [
        Committed(1, "one two three", pytest.approx(0.32)),  # type: ignore[arg-type]
        TurnFinished(1, "one two three", interrupted=True),
    ]


def test_only_one_interruption_at_a_time() -> None:
    agent = Agent()
    agent.play(5)
    agent.interrupt()
    assert agent.interrupt() == []
    assert [type(e) for e in agent.play(3)[1]] == [Paused]


def test_a_cancel_or_a_newer_reply_ends_the_paused_turn() -> None:
    agent = Agent()
    agent.play(50)
    agent.interrupt()
    agent.play(3)
    assert agent.buffer.cancel(1) == [TurnFinished(1, "one two three four five", interrupted=True)]
    assert not agent.barge_in.busy and agent.play(100)[1] == []  # no resume on the timeout
    agent = Agent()
    agent.play(50)
    agent.interrupt()
    agent.play(3)
    accepted, superseded = agent.buffer.push(reply(2, 2, "the new reply"), agent.now)
    assert accepted and superseded == [TurnFinished(1, "one two three four five", interrupted=True)]
    assert agent.play(3)[1] == [TurnStarted(2), TurnFinished(2, "the new reply", interrupted=False)]
    assert not agent.barge_in.busy


SENTENCES = "Hello there. How are you today?"  # 31 characters over 31 frames: one frame each
FINISH = BargeInConfig(finish_sentence=True, finish_sentence_max=2.0)


def test_finish_the_sentence_then_pause() -> None:
    agent = Agent(FINISH, frames=31, text=SENTENCES)
    agent.play(3)
    agent.interrupt()
    firsts, events = agent.play(12)
    assert firsts[:9] == [i * FRAME + 1 for i in range(3, 12)] and firsts[9:] == [0, 0, 0]
    assert events == [Paused(1, pytest.approx(0.3 + 0.18))]  # type: ignore[arg-type]
    assert agent.barge_in.heard(2, "Okay.", final=True) == [Resumed(1, "says nothing", True)]
    assert agent.play(1)[0] == [12 * FRAME + 1]


def test_words_while_finishing_the_sentence_cut_at_its_end() -> None:
    agent = Agent(FINISH, frames=31, text=SENTENCES)
    agent.play(3)
    agent.interrupt()
    assert agent.barge_in.heard(2, "Actually, no", final=False) == []  # the sentence goes on
    firsts, events = agent.play(12)
    assert firsts[:9] == [i * FRAME + 1 for i in range(3, 12)] and firsts[9:] == [0, 0, 0]
    assert events == [
        Committed(1, "Hello there.", pytest.approx(0.48)),  # type: ignore[arg-type]
        TurnFinished(1, "Hello there.", interrupted=True),
    ]


def test_nothing_said_while_finishing_the_sentence_lets_it_go_on() -> None:
    agent = Agent(FINISH, frames=31, text=SENTENCES)
    agent.play(3)
    agent.interrupt()
    agent.play(2)
    assert agent.barge_in.heard(2, "", final=True) == [Resumed(1, "says nothing", was_paused=False)]
    firsts, events = agent.play(26)
    assert 0 not in firsts and events == [TurnFinished(1, SENTENCES, interrupted=False)]


def test_finishing_the_sentence_is_capped() -> None:
    agent = Agent(BargeInConfig(finish_sentence=True, finish_sentence_max=0.1), frames=31, text=SENTENCES)
    agent.interrupt()
    firsts, events = agent.play(7)
    assert firsts[:5] == [i * FRAME + 1 for i in range(5)] and firsts[5:] == [0, 0]
    assert [type(e) for e in events] == [TurnStarted, Paused]


def test_the_last_sentence_ends_the_reply_as_usual() -> None:
    agent = Agent(FINISH, frames=31, text=SENTENCES)
    agent.play(20)  # in "How are you today?", the reply's last sentence
    agent.interrupt()
    agent.barge_in.heard(2, "hey listen", final=False)
    _, events = agent.play(12)
    assert events == [TurnFinished(1, SENTENCES, interrupted=False)]  # nothing to cut
    assert not agent.barge_in.busy


def test_settings_reach_the_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    assert barge_in_config(Settings.from_env()) == BargeInConfig()  # the documented defaults
    monkeypatch.setenv("EDGE_FALSE_INTERRUPTION_TIMEOUT_MS", "0")
    monkeypatch.setenv("EDGE_INTERRUPT_FINISH_SENTENCE", "true")
    monkeypatch.setenv("EDGE_INTERRUPT_FINISH_SENTENCE_MAX_MS", "800")
    monkeypatch.setenv("EDGE_INTERRUPT_MIN_WORDS", "2")
    assert barge_in_config(Settings.from_env()) == BargeInConfig(
        resume_after=0.0, min_words=2, finish_sentence=True, finish_sentence_max=0.8
    )
