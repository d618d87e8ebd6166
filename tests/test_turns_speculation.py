"""The conversation's speculative replies on virtual time: a reply requested on a
speculative final, its user message pending until the edge confirms the end of
the turn, or discarded when the user goes on."""

from __future__ import annotations

from proto import messages as m
from proto.subjects import LLM_STREAM, TRANSCRIPT
from services.turns.conversation import ConversationConfig, Drop, Effect, Outcome
from tests.test_turns_conversation import (
    CONFIG,
    GREETING,
    SYSTEM,
    Script,
    assistant,
    closed,
    drops,
    published,
    states,
    user,
)


class SpeculativeScript(Script):
    def continued(self, turn: int, previous: int) -> list[Effect]:
        msg = m.SpeechStarted(**self._ids(turn), at=1.0, continues=previous)
        return self.conversations.on_vad(msg, self.now)

    def paused(self, turn: int) -> list[Effect]:
        msg = m.SpeechPaused(**self._ids(turn), at=1.0, decided_at=1.02, frame_count=10)
        return self.conversations.on_vad(msg, self.now)

    def ended(self, turn: int) -> list[Effect]:
        msg = m.SpeechEnded(**self._ids(turn), at=1.0, decided_at=1.4, frame_count=30)
        return self.conversations.on_vad(msg, self.now)

    def speculative(self, turn: int, text: str) -> list[Effect]:
        msg = m.TranscriptFinal(**self._ids(turn), text=text, speculative=True)
        return self.conversations.on_transcript(msg, self.now)


def greeted(config: ConversationConfig = CONFIG) -> SpeculativeScript:
    script = SpeculativeScript(config)
    script.start()
    script.playout_started(0)
    script.playout_finished(0, GREETING)
    return script


def test_speculative_final_requests_at_once_with_the_user_message_pending() -> None:
    script = greeted()
    script.speech(1)
    assert script.paused(1) == []
    effects = script.speculative(1, " What is the capital of France? ")
    (request,) = published(effects, m.LlmRequest)
    assert request.speculative and request.turn_id == 1
    assert request.messages == [
        m.ChatMessage("system", SYSTEM),
        assistant(GREETING),
        user("What is the capital of France?"),
    ]
    assert states(effects) == []  # still listening: the user has only paused
    assert script.history() == [assistant(GREETING)]  # pending, not history


def test_confirmed_speculation_joins_the_history_and_the_reply_goes_on() -> None:
    script = greeted()
    script.speech(1)
    script.speculative(1, "What is the capital of France?")
    script.token(1, "Paris.")
    effects = script.ended(1)
    assert published(effects, m.LlmRequest) == [] and published(effects, m.Cancel) == []
    assert states(effects) == ["thinking"]
    assert script.history() == [assistant(GREETING), user("What is the capital of France?")]
    # stt's confirmed final of the same generation is expected: no second request, no drop
    effects = script.final(1, "What is the capital of France?")
    assert effects == []
    assert script.final(1, "What is the capital of France?") == [Drop(TRANSCRIPT, "stale")]  # a duplicate is
    assert states(script.playout_started(1)) == ["speaking"]
    effects = script.playout_finished(1, "Paris.")
    assert [(c.turn_id, c.outcome) for c in closed(effects)] == [(1, Outcome.COMPLETED)]
    request = published(script.speech(2) + script.final(2, "And Spain?"), m.LlmRequest)[0]
    assert request.messages[-3:] == [
        user("What is the capital of France?"),
        assistant("Paris."),
        user("And Spain?"),
    ]


def test_confirmed_final_or_playout_also_confirm() -> None:
    script = greeted()
    script.speech(1)
    script.speculative(1, "Hello.")
    assert published(script.final(1, "Hello."), m.LlmRequest) == []  # SpeechEnded was overtaken
    assert script.history()[-1] == user("Hello.")

    script.speech(2)
    script.speculative(2, "Again.")
    assert states(script.playout_started(2)) == ["speaking"]  # the edge only plays confirmed turns
    assert script.history()[-1] == user("Again.")


def test_discarded_speculation_never_reaches_history_nor_a_later_request() -> None:
    script = greeted()
    script.speech(1)
    script.paused(1)
    script.speculative(1, "I would like to")
    script.token(1, "Sure")
    effects = script.continued(2, 1)
    assert published(effects, m.Cancel) == []  # the edge cancelled it already
    assert [(c.turn_id, c.outcome, c.heard_text) for c in closed(effects)] == [(1, Outcome.DISCARDED, "")]
    assert script.history() == [assistant(GREETING)]
    # the speculative reply's late output is stale
    assert script.done(1, "Sure") == [Drop(LLM_STREAM, "stale")]
    assert drops(script.speculative(1, "I would like to")) == [("transcript", "stale")]

    effects = script.speculative(2, "I would like to order a pizza.")
    (request,) = published(effects, m.LlmRequest)
    assert request.turn_id == 2 and request.speculative
    assert [c.content for c in request.messages if c.role == "user"] == ["I would like to order a pizza."]
    script.ended(2)
    assert script.history() == [assistant(GREETING), user("I would like to order a pizza.")]
    request = published(script.speech(3) + script.final(3, "Large."), m.LlmRequest)[0]
    assert not any("I would like to" == c.content for c in request.messages)
    assert [c.content for c in request.messages if c.role == "user"] == [
        "I would like to order a pizza.",
        "Large.",
    ]


def test_speculative_final_after_the_end_counts_as_confirmed() -> None:
    script = greeted()
    script.speech(1)
    script.ended(1)  # stt was slow: the edge ended the turn first
    effects = script.speculative(1, "Hi there.")
    (request,) = published(effects, m.LlmRequest)
    assert request.turn_id == 1
    assert states(effects) == ["thinking"]
    assert script.history()[-1] == user("Hi there.")
    assert script.final(1, "Hi there.") == []  # its confirmed final follows, expected


def test_speculation_supersedes_the_previous_reply_and_empty_text_starts_nothing() -> None:
    script = greeted()
    script.speech(1)
    script.final(1, "Tell me a story")
    script.speech(2)
    assert published(script.speculative(2, ""), m.LlmRequest) == []  # a cough: reply 1 goes on
    script.continued(3, 2)
    effects = script.speculative(3, "About a dragon.")
    (cancel,) = published(effects, m.Cancel)
    assert (cancel.turn_id, cancel.reason) == (1, "superseded")
    assert [(c.turn_id, c.outcome) for c in closed(effects)] == [(1, Outcome.SUPERSEDED)]


def test_speculative_reply_times_out_like_any_other() -> None:
    script = greeted()
    script.speech(1)
    script.speculative(1, "Anyone there?")
    effects = script.advance(10.1)
    (cancel,) = published(effects, m.Cancel)
    assert cancel.reason == "timeout"
    assert script.history() == [assistant(GREETING)]
