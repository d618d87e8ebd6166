"""The conversation asks the llm to evaluate the coming prompt ahead (LlmPrime) while
the user speaks, on virtual time: what it sends, and when it holds back."""

from __future__ import annotations

import dataclasses

from proto import messages as m
from services.turns.conversation import Drop
from tests.test_turns_conversation import CONFIG, GREETING, SYSTEM, assistant, published, user
from tests.test_turns_speculation import SpeculativeScript, greeted


def test_every_partial_primes_the_prompt_the_request_will_have() -> None:
    script = greeted()
    script.speech(1)
    (prime,) = published(script.partial(1, " What is the "), m.LlmPrime)
    assert prime.turn_id == 1 and prime.max_tokens == CONFIG.max_tokens
    assert prime.messages == [m.ChatMessage("system", SYSTEM), assistant(GREETING), user("What is the")]
    (prime,) = published(script.partial(1, "What is the capital of"), m.LlmPrime)
    assert prime.messages[-1] == user("What is the capital of")
    (request,) = published(script.speculative(1, "What is the capital of France?"), m.LlmRequest)
    # The same prompt up to the user's last words: the llm's cache covers all but those.
    assert request.messages[:-1] == prime.messages[:-1]


def test_the_llm_gets_every_transcript_with_its_first_letter_upper_case() -> None:
    script = greeted()
    script.speech(1)
    (first,) = published(script.partial(1, "had he married"), m.LlmPrime)
    (second,) = published(script.partial(1, "Had he married a more"), m.LlmPrime)
    (request,) = published(script.speculative(1, "had he married a more amiable woman."), m.LlmRequest)
    # Whisper's case flips from one partial to the next; the prompts' tokens must not.
    assert first.messages[-1] == user("Had he married")
    assert second.messages[-1] == user("Had he married a more")
    assert request.messages[-1] == user("Had he married a more amiable woman.")


def test_without_every_partial_the_first_partial_and_the_pause_prime() -> None:
    script = greeted(dataclasses.replace(CONFIG, prime_every_partial=False))
    script.speech(1)
    (prime,) = published(script.partial(1, " What is the "), m.LlmPrime)
    assert prime.messages[-1] == user("What is the")
    # While the user speaks on: no prime per partial.
    assert published(script.partial(1, "What is the capital"), m.LlmPrime) == []
    (prime,) = published(script.paused(1), m.LlmPrime)
    assert prime.messages[-1] == user("What is the capital")
    (prime,) = published(script.partial(1, "What is the capital of"), m.LlmPrime)  # after the pause
    assert prime.messages[-1] == user("What is the capital of")
    (request,) = published(script.speculative(1, "What is the capital of France?"), m.LlmRequest)
    # The same prompt up to the user's last words: the llm's cache covers all but those.
    assert request.messages[:-1] == prime.messages[:-1]


def test_a_turn_that_goes_on_after_a_pause_primes_again() -> None:
    script = greeted()
    script.speech(1)
    script.partial(1, "I think")
    script.paused(1)
    script.speculative(1, "I think.")
    script.continued(2, 1)
    (prime,) = published(script.partial(2, "I think that cats"), m.LlmPrime)
    assert prime.turn_id == 2 and prime.messages[-1] == user("I think that cats")


def test_no_prime_while_a_reply_is_open_nor_for_an_empty_partial() -> None:
    script = greeted()
    script.speech(1)
    assert published(script.partial(1, "   "), m.LlmPrime) == []
    script.speculative(1, "Tell me a story.")
    script.ended(1)
    script.playout_started(1)
    script.speech(2)  # the user talks over the reply: it will join the history first
    assert published(script.partial(2, "wait"), m.LlmPrime) == []
    script.playout_finished(1, "Once upon", interrupted=True)
    (prime,) = published(script.partial(2, "Wait a second"), m.LlmPrime)  # the first one primed
    assert prime.messages[-3:] == [
        user("Tell me a story."),
        m.ChatMessage("assistant", "Once upon", interrupted=True),
        user("Wait a second"),
    ]


def test_priming_can_be_turned_off_and_a_stale_partial_primes_nothing() -> None:
    script = SpeculativeScript(dataclasses.replace(CONFIG, prime_llm=False))
    script.start()
    script.speech(1)
    assert published(script.partial(1, "What is"), m.LlmPrime) == []
    script = greeted()
    script.speech(1)
    script.final(1, "Hi there.")
    effects = script.partial(1, "Hi")  # late: the turn has its final already
    assert published(effects, m.LlmPrime) == [] and any(isinstance(e, Drop) for e in effects)


def test_from_the_pause_on_primes_go_ahead_and_the_same_words_keep_the_primed_text() -> None:
    script = greeted()
    script.speech(1)
    (prime,) = published(script.partial(1, "He was not"), m.LlmPrime)
    assert not prime.ahead  # while the user speaks: only evaluate
    (prime,) = published(script.paused(1), m.LlmPrime)
    assert prime.ahead and prime.messages[-1] == user("He was not")  # the llm may draft its reply
    # A later partial with the same words would only restart that draft.
    assert published(script.partial(1, "He was not"), m.LlmPrime) == []
    assert published(script.partial(1, "He was not..."), m.LlmPrime) == []
    (request,) = published(script.speculative(1, "he was NOT."), m.LlmRequest)
    assert request.messages == prime.messages  # the draft's prompt: it is adopted
    script.ended(1)
    script.playout_started(1)
    script.playout_finished(1, "Indeed.")
    script.speech(2)
    (next_prime,) = published(script.partial(2, "Why"), m.LlmPrime)
    assert user("He was not") in next_prime.messages  # the history keeps the primed text


def test_a_final_with_other_words_is_requested_as_heard() -> None:
    script = greeted()
    script.speech(1)
    script.partial(1, "He was not an old spose")
    script.paused(1)
    (request,) = published(script.speculative(1, "He was not an old-sposed young man."), m.LlmRequest)
    assert request.messages[-1] == user("He was not an old-sposed young man.")
