"""The conversation logic on virtual time: a scripted session, no sockets, no clock."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from proto import messages as m
from proto.subjects import (
    CONTROL,
    LLM_REQUEST,
    LLM_STREAM,
    PLAYOUT,
    SESSION,
    STATE,
    TRANSCRIPT,
    TTS_REQUEST,
    VAD,
)
from services.turns.conversation import (
    ConversationConfig,
    Conversations,
    Drop,
    Effect,
    Outcome,
    Publish,
    TurnClosed,
)

T = TypeVar("T", bound=msgspec.Struct)
SID = "abc123"
SYSTEM = "You are Ava, a test persona."
GREETING = "Hello! I'm Ava."
CONFIG = ConversationConfig(
    system_prompt=SYSTEM, greeting=GREETING, reply_timeout_s=10.0, session_idle_timeout_s=100.0
)


class Script:
    """Plays the other services' part for one session, on a virtual clock."""

    def __init__(self, config: ConversationConfig = CONFIG) -> None:
        self.conversations = Conversations(config)
        self.now = 5000.0
        self._seq = 0

    def _ids(self, turn: int) -> dict[str, Any]:
        self._seq += 1
        return {"session_id": SID, "turn_id": turn, "seq": self._seq}

    def advance(self, seconds: float) -> list[Effect]:
        self.now += seconds
        return self.conversations.tick(self.now)

    def start(self) -> list[Effect]:
        return self.conversations.on_session(m.SessionStarted(**self._ids(0), started_at=1.0), self.now)

    def end(self) -> list[Effect]:
        return self.conversations.on_session(m.SessionEnded(**self._ids(0)), self.now)

    def speech(self, turn: int) -> list[Effect]:
        return self.conversations.on_vad(m.SpeechStarted(**self._ids(turn), at=1.0), self.now)

    def final(self, turn: int, text: str) -> list[Effect]:
        return self.conversations.on_transcript(m.TranscriptFinal(**self._ids(turn), text=text), self.now)

    def partial(self, turn: int, text: str) -> list[Effect]:
        return self.conversations.on_transcript(m.TranscriptPartial(**self._ids(turn), text=text), self.now)

    def token(self, turn: int, text: str, index: int = 0) -> list[Effect]:
        return self.conversations.on_llm(m.LlmToken(**self._ids(turn), text=text, index=index), self.now)

    def done(self, turn: int, text: str, error: str = "") -> list[Effect]:
        msg = m.LlmDone(**self._ids(turn), text=text, tokens=3, first_token_at=1.0, error=error)
        return self.conversations.on_llm(msg, self.now)

    def playout_started(self, turn: int) -> list[Effect]:
        return self.conversations.on_playout(m.PlayoutStarted(**self._ids(turn), at=1.0), self.now)

    def playout_finished(self, turn: int, heard: str, interrupted: bool = False) -> list[Effect]:
        msg = m.PlayoutFinished(**self._ids(turn), heard_text=heard, interrupted=interrupted, at=1.0)
        return self.conversations.on_playout(msg, self.now)

    def reply(self, turn: int, user: str, answer: str) -> m.LlmRequest:
        """A whole turn heard to the end; returns the request that started it."""
        self.speech(turn)
        (request,) = published(self.final(turn, user), m.LlmRequest)
        self.token(turn, answer)
        self.done(turn, answer)
        self.playout_started(turn)
        self.playout_finished(turn, answer)
        return request

    def history(self) -> list[m.ChatMessage]:
        session = self.conversations.session(SID)
        assert session is not None
        return session.history


def published(effects: list[Effect], kind: type[T]) -> list[T]:
    return [e.message for e in effects if isinstance(e, Publish) and isinstance(e.message, kind)]


def states(effects: list[Effect]) -> list[str]:
    return [s.state for s in published(effects, m.AgentState)]


def drops(effects: list[Effect]) -> list[tuple[str, str]]:
    return [(e.channel.name, e.reason) for e in effects if isinstance(e, Drop)]


def closed(effects: list[Effect]) -> list[TurnClosed]:
    return [e for e in effects if isinstance(e, TurnClosed)]


def user(text: str) -> m.ChatMessage:
    return m.ChatMessage("user", text)


def assistant(text: str, interrupted: bool = False) -> m.ChatMessage:
    return m.ChatMessage("assistant", text, interrupted)


def test_greeting_goes_to_tts_and_is_recorded_once_heard() -> None:
    script = Script()
    effects = script.start()
    assert [(e.channel, type(e.message)) for e in effects if isinstance(e, Publish)] == [
        (TTS_REQUEST, m.TextChunk),
        (STATE, m.AgentState),
    ]
    (chunk,) = published(effects, m.TextChunk)
    assert (chunk.session_id, chunk.turn_id, chunk.index, chunk.text, chunk.last) == (
        SID,
        0,
        0,
        GREETING,
        True,
    )
    assert states(effects) == ["speaking"]
    assert script.history() == []  # nothing is history before it is heard

    assert script.playout_started(0) == []  # already speaking: no repeated state
    effects = script.playout_finished(0, GREETING)
    assert states(effects) == ["listening"]
    assert [(c.turn_id, c.outcome) for c in closed(effects)] == [(0, Outcome.COMPLETED)]
    assert script.history() == [assistant(GREETING)]


def test_greeting_can_be_disabled() -> None:
    script = Script(ConversationConfig(system_prompt=SYSTEM, greeting=GREETING, greeting_enabled=False))
    effects = script.start()
    assert published(effects, m.TextChunk) == []
    assert states(effects) == ["listening"]


def test_an_uninterruptible_greeting_says_so_and_is_not_cancelled_while_heard() -> None:
    config = ConversationConfig(system_prompt=SYSTEM, greeting=GREETING, greeting_interruptible=False)
    script = Script(config)
    (chunk,) = published(script.start(), m.TextChunk)
    assert chunk.allow_interruptions is False
    script.playout_started(0)
    script.speech(1)
    effects = script.final(1, "Hi there")
    assert published(effects, m.Cancel) == []  # the edge plays the greeting out
    assert [r.turn_id for r in published(effects, m.LlmRequest)] == [1]  # the reply follows
    effects = script.playout_finished(0, GREETING)
    assert [(c.turn_id, c.outcome) for c in closed(effects)] == [(0, Outcome.COMPLETED)]
    assert script.history() == [assistant(GREETING), user("Hi there")]


def test_an_uninterruptible_greeting_not_yet_heard_is_still_cancelled() -> None:
    config = ConversationConfig(system_prompt=SYSTEM, greeting=GREETING, greeting_interruptible=False)
    script = Script(config)
    script.start()
    script.speech(1)
    effects = script.final(1, "Hi there")
    assert [(c.turn_id, c.reason) for c in published(effects, m.Cancel)] == [(0, "superseded")]


def test_the_greeting_is_interruptible_by_default() -> None:
    (chunk,) = published(Script().start(), m.TextChunk)
    assert chunk.allow_interruptions is True


def test_scripted_conversation_over_two_turns() -> None:
    script = Script()
    script.start()
    script.playout_started(0)
    script.playout_finished(0, GREETING)

    assert script.speech(1) == []  # the agent was listening already
    effects = script.final(1, " What is the capital of France? ")
    (request,) = published(effects, m.LlmRequest)
    assert [e.channel for e in effects if isinstance(e, Publish)] == [LLM_REQUEST, STATE]
    assert (request.session_id, request.turn_id, request.max_tokens) == (SID, 1, 150)
    assert request.messages == [
        m.ChatMessage("system", SYSTEM),
        assistant(GREETING),
        user("What is the capital of France?"),
    ]
    assert states(effects) == ["thinking"]

    assert script.token(1, "Paris.") == []
    assert script.done(1, "Paris.") == []  # still thinking until the edge plays it
    assert states(script.playout_started(1)) == ["speaking"]
    effects = script.playout_finished(1, "Paris.")
    assert states(effects) == ["listening"]
    assert [(c.outcome, c.heard_text, c.generated_text) for c in closed(effects)] == [
        (Outcome.COMPLETED, "Paris.", "Paris.")
    ]

    script.speech(2)
    effects = script.final(2, "And of Spain?")
    (request,) = published(effects, m.LlmRequest)
    assert request.messages == [
        m.ChatMessage("system", SYSTEM),
        assistant(GREETING),
        user("What is the capital of France?"),
        assistant("Paris."),
        user("And of Spain?"),
    ]
    seqs = [getattr(e.message, "seq", 0) for e in effects if isinstance(e, Publish)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] > 3


def test_superseding_utterance_cancels_the_older_reply() -> None:
    script = Script()
    script.start()
    script.playout_finished(0, GREETING)
    script.final(1, "Tell me a story")
    script.token(1, "Once")
    assert states(script.speech(2)) == ["listening"]
    effects = script.final(2, "About a dragon")

    publishes = [e for e in effects if isinstance(e, Publish)]
    assert [p.channel for p in publishes] == [CONTROL, LLM_REQUEST, STATE]
    (cancel,) = published(effects, m.Cancel)
    assert (cancel.turn_id, cancel.reason) == (1, "superseded")
    (request,) = published(effects, m.LlmRequest)
    assert request.turn_id == 2
    assert request.messages[-2:] == [user("Tell me a story"), user("About a dragon")]
    assert [(c.turn_id, c.outcome, c.interrupted) for c in closed(effects)] == [(1, Outcome.SUPERSEDED, True)]
    assert states(effects) == ["thinking"]

    # The cancelled reply's late output is stale; the new reply is untouched.
    assert script.token(1, " upon") == [Drop(LLM_STREAM, "stale")]
    assert script.playout_started(1) == [Drop(PLAYOUT, "stale")]
    assert states(script.playout_started(2)) == ["speaking"]


def test_reply_superseded_while_playing_keeps_what_was_heard_in_turn_order() -> None:
    script = Script()
    script.final(1, "Tell me a story")
    script.playout_started(1)
    effects = script.final(2, "A short one")
    assert [c.turn_id for c in published(effects, m.Cancel)] == [1]
    assert closed(effects) == []  # the edge has yet to say what was heard

    effects = script.playout_finished(1, "Once upon a", interrupted=True)
    assert drops(effects) == []
    assert [(c.turn_id, c.outcome) for c in closed(effects)] == [(1, Outcome.INTERRUPTED)]
    assert states(effects) == []  # still thinking about turn 2
    assert script.history() == [
        user("Tell me a story"),
        assistant("Once upon a", interrupted=True),
        user("A short one"),
    ]


def test_interrupted_reply_keeps_only_the_heard_text() -> None:
    script = Script()
    script.start()
    script.playout_finished(0, GREETING)
    answer = "The capital of France is Paris, a city of lights and cafes."
    script.final(1, "What is the capital of France?")
    for index, word in enumerate(answer.split(" ")):
        script.token(1, word + " ", index)
    script.done(1, answer)
    script.playout_started(1)

    assert states(script.speech(2)) == ["listening"]  # barge-in: the user talks over the agent
    effects = script.playout_finished(1, "The capital of France", interrupted=True)
    assert published(effects, m.Cancel) == []  # the edge cancelled it, not us
    assert [(c.outcome, c.heard_text, c.generated_text) for c in closed(effects)] == [
        (Outcome.INTERRUPTED, "The capital of France", answer)
    ]

    effects = script.final(2, "Wait, what about Germany?")
    assert published(effects, m.Cancel) == []  # nothing in progress any more
    (request,) = published(effects, m.LlmRequest)
    assert request.messages[0] == m.ChatMessage("system", SYSTEM)
    assert request.messages[-2:] == [
        assistant("The capital of France", interrupted=True),
        user("Wait, what about Germany?"),
    ]
    assert not any("Paris" in message.content for message in request.messages)


def test_a_reply_nobody_heard_leaves_no_assistant_message() -> None:
    script = Script()
    script.final(1, "Hello")
    script.playout_started(1)
    effects = script.playout_finished(1, "", interrupted=True)
    assert [c.outcome for c in closed(effects)] == [Outcome.INTERRUPTED]
    assert script.history() == [user("Hello")]


def test_stale_messages_are_dropped_and_counted() -> None:
    script = Script()
    script.start()
    script.playout_finished(0, GREETING)
    script.final(1, "first")
    script.speech(2)
    script.final(2, "second")  # supersedes turn 1, which never played
    history = script.history()

    assert script.speech(1) == [Drop(VAD, "stale")]
    assert script.partial(1, "fir") == [Drop(TRANSCRIPT, "stale")]
    assert script.final(1, "first again") == [Drop(TRANSCRIPT, "stale")]
    assert script.final(2, "second again") == [Drop(TRANSCRIPT, "stale")]  # a duplicate final
    assert script.done(1, "late") == [Drop(LLM_STREAM, "stale")]
    assert script.playout_started(0) == [Drop(PLAYOUT, "stale")]
    assert script.playout_finished(1, "late", interrupted=False) == [Drop(PLAYOUT, "stale")]
    assert script.token(7, "from the future") == [Drop(LLM_STREAM, "unexpected")]
    assert script.history() == history  # none of it reached the history

    assert states(script.playout_started(2)) == ["speaking"]  # turn 2 is still live


def test_history_is_trimmed_to_the_newest_messages() -> None:
    config = ConversationConfig(system_prompt=SYSTEM, greeting=GREETING, history_max_messages=4)
    script = Script(config)
    script.start()
    script.playout_finished(0, GREETING)
    for turn in (1, 2):
        script.reply(turn, f"Question {turn}", f"answer {turn}")
    request = script.reply(3, "question 3", "answer 3")

    assert request.messages == [
        m.ChatMessage("system", SYSTEM),
        assistant("answer 1"),
        user("Question 2"),
        assistant("answer 2"),
        user("Question 3"),
    ]
    assert len(script.history()) == 4


def test_llm_error_goes_back_to_listening_without_history() -> None:
    script = Script()
    script.final(1, "Hi")
    effects = script.done(1, "", error="model crashed")
    assert states(effects) == ["listening"]
    assert [(c.turn_id, c.outcome) for c in closed(effects)] == [(1, Outcome.FAILED)]
    assert script.history() == [user("Hi")]
    assert script.playout_started(1) == [Drop(PLAYOUT, "stale")]


def test_empty_final_asks_nothing_and_lets_the_reply_go_on() -> None:
    script = Script()
    script.start()
    script.playout_finished(0, GREETING)
    script.speech(1)
    effects = script.final(1, "  ")
    assert published(effects, m.LlmRequest) == [] and states(effects) == []

    script.final(2, "What time is it?")
    assert states(script.speech(3)) == ["listening"]
    effects = script.final(3, "")  # a cough while the agent thinks
    assert published(effects, m.Cancel) == [] and published(effects, m.LlmRequest) == []
    assert states(effects) == ["thinking"]  # reply 2 was never given up


def test_silent_reply_times_out_on_virtual_time() -> None:
    script = Script()
    script.final(1, "Are you there?")
    assert script.advance(9.9) == []
    effects = script.advance(0.2)
    (cancel,) = published(effects, m.Cancel)
    assert (cancel.turn_id, cancel.reason) == (1, "timeout")
    assert states(effects) == ["listening"]
    assert [c.outcome for c in closed(effects)] == [Outcome.TIMED_OUT]

    # A reply that is playing is never timed out: playout can be long.
    script.final(2, "Tell me everything")
    script.playout_started(2)
    assert script.advance(60.0) == []


def test_session_lifecycle() -> None:
    script = Script()
    script.start()
    assert script.start() == [Drop(SESSION, "duplicate")]
    assert len(script.conversations) == 1
    assert script.end() == []
    assert SID not in script.conversations
    assert script.done(1, "hi") == [Drop(LLM_STREAM, "unknown_session")]
    assert script.playout_finished(0, GREETING) == [Drop(PLAYOUT, "unknown_session")]

    # A user speaking in a session we never saw start is answered, without a greeting.
    effects = script.final(1, "hello?")
    assert published(effects, m.TextChunk) == []
    assert len(published(effects, m.LlmRequest)) == 1

    script.playout_started(1)
    script.advance(99.0)
    assert SID in script.conversations
    script.advance(1.0)  # idle for session_idle_timeout_s
    assert SID not in script.conversations


def test_a_backchannel_while_the_agent_speaks_is_not_a_turn() -> None:
    script = Script()
    script.start()
    script.playout_finished(0, GREETING)
    script.speech(1)
    script.final(1, "Tell me a story.")
    script.token(1, "Once upon a time.")
    script.playout_started(1)
    script.speech(2)
    speculative = m.TranscriptFinal(**script._ids(2), text="Mhm.", speculative=True)
    effects = script.conversations.on_transcript(speculative, script.now)
    effects += script.final(2, "Mhm.")
    assert published(effects, m.Cancel) == [] and published(effects, m.LlmRequest) == []
    script.done(1, "Once upon a time.")
    script.playout_finished(1, "Once upon a time.")
    assert script.history()[-2:] == [user("Tell me a story."), assistant("Once upon a time.")]


def test_a_backchannel_while_the_agent_is_silent_is_a_turn() -> None:
    script = Script()
    script.start()
    script.playout_finished(0, GREETING)
    request = script.reply(1, "Shall I go on?", "Do you want more?")
    assert request.turn_id == 1
    script.speech(2)
    (request,) = published(script.final(2, "Yeah."), m.LlmRequest)
    assert request.messages[-1] == user("Yeah.")


def test_words_over_the_agent_still_take_the_turn() -> None:
    script = Script()
    script.start()
    script.playout_finished(0, GREETING)
    script.speech(1)
    script.final(1, "Tell me a story.")
    script.playout_started(1)
    script.speech(2)
    effects = script.final(2, "Yeah, but make it short.")
    assert [c.turn_id for c in published(effects, m.Cancel)] == [1]
    assert published(effects, m.LlmRequest)[0].messages[-1] == user("Yeah, but make it short.")
