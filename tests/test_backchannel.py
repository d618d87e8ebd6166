"""The shared rule: which transcripts say nothing (backchannels, coughs, noise)."""

from __future__ import annotations

import pytest

from services.common.backchannel import content_words, says_nothing


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "Mhm.",
        "Yeah.",
        "Mm-hm",
        "Uh-huh.",
        "Okay, okay.",
        "(coughs)",
        "[MUSIC]",
        "*sigh*",
        "Oh, I see.",
        "Yeah, right.",
        "Go on.",
        "f",  # the first 300 ms of "yeah, yeah", as Whisper tiny heard it
        "O.",
    ],
)
def test_backchannels_and_noise_say_nothing(text: str) -> None:
    assert says_nothing(text)


@pytest.mark.parametrize(
    "text",
    [
        "Wait.",
        "Yeah, but wait.",
        "Stop, please.",
        "No.",
        "What about Paris?",
        "I see a problem.",
        "(coughs) Hold on.",
        "I",
        "5",
    ],
)
def test_words_with_content_say_something(text: str) -> None:
    assert not says_nothing(text)


def test_content_words_drop_backchannel_and_keep_the_rest() -> None:
    assert content_words("Yeah, but wait (coughs) a moment.") == ["but", "wait", "a", "moment"]
