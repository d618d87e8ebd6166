"""The barge-in decision on virtual time (duration, words, allow flags), its
settings, and the hooks the speaking events flow through."""

from __future__ import annotations

import pytest

from services.edge import events
from services.edge.config import Settings
from services.edge.events import Event, Hooks
from services.edge.interruption import InterruptConfig, InterruptDecider, count_words
from services.edge.tuning import interrupt_config
from services.turns.config import Settings as TurnsSettings

VOICED, SILENT, BETWEEN = 0.9, 0.05, 0.4


def feed(decider: InterruptDecider, probabilities: list[float], start: float = 0.0) -> list[bool]:
    """One 20 ms frame per probability; the decision after each (agent audio cuttable)."""
    decisions = []
    for i, p in enumerate(probabilities):
        decider.push(p, start + i * 0.02)
        decisions.append(decider.decide(interruptible=True))
    return decisions


def test_cuts_after_300_ms_of_sustained_speech_not_before() -> None:
    decider = InterruptDecider()
    decisions = feed(decider, [VOICED] * 20)
    assert decisions.index(True) == 14  # the 15th frame completes 300 ms
    assert decider.sustained_ms == pytest.approx(400)


def test_short_bursts_never_add_up() -> None:
    decider = InterruptDecider()
    burst = [VOICED] * 12 + [SILENT]  # 240 ms of speech, then silence
    assert not any(feed(decider, burst * 5))


def test_frames_between_the_thresholds_bridge_the_run() -> None:
    decider = InterruptDecider()
    decisions = feed(decider, [VOICED] * 10 + [BETWEEN] * 3)
    assert not any(decisions) and decider.sustained_ms == pytest.approx(200)  # held, not grown
    decisions = feed(decider, [VOICED] * 5, start=0.26)
    assert decisions.index(True) == 1  # voiced again: the bridged 60 ms count
    assert decider.sustained_ms == pytest.approx(360)


def test_the_duration_is_configurable() -> None:
    decider = InterruptDecider(InterruptConfig(speech_ms=100))
    assert feed(decider, [VOICED] * 6).index(True) == 4


def test_min_words_waits_for_the_partial_of_the_current_utterance() -> None:
    decider = InterruptDecider(InterruptConfig(min_words=3))
    decider.started(4)
    assert not any(feed(decider, [VOICED] * 20))
    decider.heard(3, "an older utterance with words")  # not this one
    assert not decider.decide(interruptible=True)
    decider.heard(4, "wait a")
    assert not decider.decide(interruptible=True)
    decider.heard(4, "wait a second")
    assert decider.decide(interruptible=True)


def test_a_continued_utterance_keeps_its_words_a_new_one_does_not() -> None:
    decider = InterruptDecider(InterruptConfig(min_words=2))
    decider.started(1)
    decider.heard(1, "stop it")
    decider.started(2, continues=1)  # a pause, then the same utterance goes on
    assert decider.words == 2
    decider.heard(1, "stop it now")  # late, of the old generation: ignored
    assert decider.words == 2
    decider.heard(2, "stop it now please")
    assert decider.words == 4
    decider.ended()
    decider.started(3)
    assert decider.words == 0


def test_words_without_enough_speech_do_not_cut() -> None:
    decider = InterruptDecider(InterruptConfig(min_words=1))
    decider.started(1)
    decider.heard(1, "yes")
    assert not any(feed(decider, [VOICED] * 10))


def test_the_utterance_stays_qualified_until_it_ends() -> None:
    decider = InterruptDecider(InterruptConfig(min_words=2))
    decider.started(1)
    feed(decider, [VOICED] * 16 + [SILENT] * 5)  # the partial comes after the speech
    decider.heard(1, "stop please")
    assert decider.decide(interruptible=True)
    decider.ended()
    assert not decider.decide(interruptible=True)


def test_no_cut_when_interruptions_are_off_globally_or_for_the_chunk() -> None:
    off = InterruptDecider(InterruptConfig(allowed=False))
    assert not any(feed(off, [VOICED] * 30))
    decider = InterruptDecider()
    feed(decider, [VOICED] * 20)
    assert not decider.decide(interruptible=False)
    assert decider.decide(interruptible=True)


def test_after_a_cut_the_same_speech_does_not_cut_again() -> None:
    decider = InterruptDecider()
    feed(decider, [VOICED] * 15)
    decider.cut()
    assert not decider.decide(interruptible=True)
    assert feed(decider, [VOICED] * 1, start=0.3) == [True]  # still one run of speech: cuts again


def test_after_a_resume_the_same_utterance_never_pauses_the_agent_again() -> None:
    decider = InterruptDecider()
    decider.started(1)
    feed(decider, [VOICED] * 15)
    decider.cut()
    decider.resumed()  # it said nothing: the agent went on
    assert not any(feed(decider, [VOICED] * 30, start=0.3))
    decider.started(2, continues=1)  # a pause, then the same utterance goes on
    assert not any(feed(decider, [SILENT] + [VOICED] * 20, start=1.0))
    decider.ended()
    decider.started(3)  # the next utterance may
    assert any(feed(decider, [SILENT] + [VOICED] * 20, start=3.0))


def test_a_new_utterance_is_not_held_back_by_a_resumed_one() -> None:
    decider = InterruptDecider()
    decider.started(1)
    feed(decider, [VOICED] * 15)
    decider.resumed()
    decider.started(2)  # a new utterance, not a continuation (its end was missed)
    assert any(feed(decider, [SILENT] + [VOICED] * 20, start=1.0))


def test_the_onset_is_where_the_qualifying_run_began() -> None:
    decider = InterruptDecider()
    decider.started(7)
    feed(decider, [VOICED] * 5 + [SILENT] + [VOICED] * 16, start=10.0)
    assert decider.utterance == 7
    assert decider.onset == pytest.approx(10.12)  # the run after the silent frame
    feed(decider, [SILENT] * 3, start=10.44)
    assert decider.onset == pytest.approx(10.12)  # still known after the run ended


def test_words_are_counted_without_punctuation() -> None:
    assert count_words("Wait, wait -- what?") == 3
    assert count_words(" ... ") == 0


def test_settings_reach_the_decider(monkeypatch: pytest.MonkeyPatch) -> None:
    assert interrupt_config(Settings.from_env()) == InterruptConfig()  # the documented defaults
    monkeypatch.setenv("EDGE_INTERRUPT_SPEECH_MS", "500")
    monkeypatch.setenv("EDGE_INTERRUPT_MIN_WORDS", "2")
    monkeypatch.setenv("EDGE_ALLOW_INTERRUPTIONS", "false")
    config = interrupt_config(Settings.from_env())
    assert (config.speech_ms, config.min_words, config.allowed) == (500, 2, False)


def test_turns_setting_makes_the_greeting_uninterruptible(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TurnsSettings.from_env().conversation().greeting_interruptible is True
    monkeypatch.setenv("TURNS_GREETING_INTERRUPTIBLE", "false")
    assert TurnsSettings.from_env().conversation().greeting_interruptible is False


def test_hooks_get_the_speaking_events_in_order() -> None:
    hooks = Hooks()
    seen: list[tuple[str, Event]] = []

    def broken(_event: Event) -> None:
        raise RuntimeError("a bug in someone's hook")

    hooks.on("interrupted", lambda e: seen.append(("first", e)))
    hooks.on("interrupted", broken)
    hooks.on("interrupted", lambda e: seen.append(("second", e)))
    hooks.on("user_started_speaking", lambda e: seen.append(("user", e)))
    hooks.emit(events.interrupted(3, "so the"))
    hooks.emit(events.agent_stopped(3, True, "so the"))  # nobody listens
    hooks.emit(events.user_started(4))
    assert seen == [
        ("first", {"type": "interrupted", "turn_id": 3, "heard_text": "so the"}),
        ("second", {"type": "interrupted", "turn_id": 3, "heard_text": "so the"}),
        ("user", {"type": "user_started_speaking", "turn_id": 4, "continues": 0}),
    ]
    with pytest.raises(ValueError, match="no hook"):
        hooks.on("transcript", broken)
