"""Does a transcript read as a finished turn? Pure functions of the text.

The endpointing silence adapts to what the user said so far: a question or a
whole sentence needs less silence to be over than a phrase that trails off
("so ...", "and", "um"). Whisper punctuates what it hears, so the last
characters and the last word are enough to tell.

- ``complete``: ends with ``.``, ``?`` or ``!`` and its last word is not a
  trailing word ("I went to the." is still trailing: Whisper puts a period on
  whatever it heard last).
- ``incomplete``: ends with a trailing word, or with ``...``, ``…``, ``,``,
  ``;``, ``:`` or a dash.
- ``unknown``: anything else, including no text at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

Reading = Literal["complete", "incomplete", "unknown"]

# Words a turn practically never ends on: conjunctions, fillers, articles,
# prepositions that need what follows.
DEFAULT_TRAILING_WORDS = (
    "and",
    "or",
    "but",
    "so",
    "because",
    "um",
    "uh",
    "er",
    "erm",
    "the",
    "a",
    "an",
    "to",
    "of",
    "with",
    "like",
    "my",
    "your",
)
TRAILING_MARKS = ("...", "…", ",", ";", ":", "-", "–", "—")
COMPLETE_MARKS = (".", "?", "!")
_WORD = re.compile(r"[a-z']+")


def normalize_words(words: Iterable[str]) -> frozenset[str]:
    return frozenset(w.strip().lower() for w in words if w.strip())


def reading(text: str | None, trailing_words: frozenset[str]) -> Reading:
    """How ``text`` (the newest transcript of the utterance) ends."""
    if text is None:
        return "unknown"
    stripped = text.strip().rstrip("\"')]")
    if not stripped:
        return "unknown"
    words = _WORD.findall(stripped.lower())
    if words and words[-1] in trailing_words:
        return "incomplete"
    if stripped.endswith(TRAILING_MARKS):
        return "incomplete"
    if stripped.endswith(COMPLETE_MARKS):
        return "complete"
    return "unknown"
