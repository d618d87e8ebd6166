"""Where in a chunk's text the audio is: words heard, and the end of a sentence.

TTS sends no timings, so positions are estimated: a chunk's audio is taken to
say its text at an even pace, characters mapped to samples in proportion. Good
enough to tell which words of a cut-off chunk were heard (the history records
only those), and roughly where the sentence being spoken ends (the agent may
finish it before it stops). Both work on the text with its outer blanks removed.
"""

from __future__ import annotations

import re

EPSILON = 1e-9
_WORD = re.compile(r"\S+")
# A run of . ! ? (with any closing quotes or brackets) that ends a sentence:
# followed by a blank or the end, so "3.5" inside a word does not count.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")


def heard_words(text: str, fraction: float) -> str:
    """The words of ``text`` whose estimated end lies within the first ``fraction``
    of its audio: a word counts as heard once its last character has been played."""
    text = text.strip()
    if fraction >= 1.0 - EPSILON:
        return text
    played = max(0.0, fraction) * len(text)
    end = 0
    for match in _WORD.finditer(text):
        if match.end() > played + EPSILON:
            break
        end = match.end()
    return text[:end]


def sentence_end(text: str, fraction: float) -> float | None:
    """Where the sentence being said at ``fraction`` of ``text``'s audio ends, as a
    fraction of that audio; None when no sentence ends in the rest of the text.
    At a sentence's very end, that end (the sentence is done)."""
    text = text.strip()
    if not text:
        return None
    position = max(0.0, fraction) * len(text)
    for match in _SENTENCE_END.finditer(text):
        if match.end() >= position - EPSILON:
            return match.end() / len(text)
    return None
