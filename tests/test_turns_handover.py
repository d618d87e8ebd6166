"""A conversation moving between turns replicas, on virtual time: the draining one
gives back its history, the next one goes on with it and never greets again."""

from __future__ import annotations

from proto import messages as m
from services.turns.conversation import Publish
from services.turns.handover import HandoverConversations
from tests.test_turns_conversation import CONFIG, GREETING, SID, SYSTEM, Script, assistant, published, user


def test_the_history_goes_with_the_session_and_the_next_turn_sees_it() -> None:
    old = Script()
    old.conversations = HandoverConversations(CONFIG)
    old.start()
    old.playout_started(0)
    old.playout_finished(0, GREETING)
    old.speech(1)
    old.final(1, "What is the capital of France?")
    old.playout_started(1)
    old.playout_finished(1, "Paris.")
    history = old.conversations.release(SID)
    assert history == [assistant(GREETING), user("What is the capital of France?"), assistant("Paris.")]
    assert SID not in old.conversations and old.conversations.release(SID) == []

    new = Script()
    new.conversations = HandoverConversations(CONFIG)
    new.conversations.adopt(SID, history, new.now)
    new.conversations.adopt(SID, [], new.now)  # an assignment retried: the session stays as it is
    effects = new.speech(2) + new.final(2, "And Spain?")
    (request,) = published(effects, m.LlmRequest)
    assert request.messages == [
        m.ChatMessage("system", SYSTEM),
        assistant(GREETING),
        user("What is the capital of France?"),
        assistant("Paris."),
        user("And Spain?"),
    ]
    assert not [e for e in effects if isinstance(e, Publish) and isinstance(e.message, m.TextChunk)]
    new.playout_started(2)
    new.playout_finished(2, "Madrid.")
    assert new.history()[-2:] == [user("And Spain?"), assistant("Madrid.")]
