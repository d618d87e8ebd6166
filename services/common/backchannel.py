"""Does a transcript say something, or is it a backchannel? A pure function of the text.

Both the edge (may a pause of the agent's voice resume?) and the turns service
(does this final take the turn from a playing reply?) ask the same question, so
the answer lives here once. A transcript "says nothing" when, after dropping
Whisper's non-speech annotations ("(coughs)", "[MUSIC]", "*sigh*") and
punctuation, it is empty or made only of backchannel words and phrases: "mhm",
"yeah", "okay", "right", "I see", "go on" and the like. "Yeah, but wait" says
something: "but" and "wait" are not backchannel words.

A lone letter other than "I" and "a" is no word either: it is what Whisper makes of
the first few hundred milliseconds of a word still being said (the bench saw the
start of "yeah, yeah" over the agent transcribed "f", and that cut the reply).
"""

from __future__ import annotations

import re

BACKCHANNEL_WORDS = frozenset(
    {
        "mm",
        "mmm",
        "mhm",
        "mmhm",
        "mm-hm",
        "mm-hmm",
        "hm",
        "hmm",
        "uh-huh",
        "uh",
        "um",
        "uhm",
        "ah",
        "aha",
        "oh",
        "ooh",
        "yeah",
        "yes",
        "yep",
        "yup",
        "ok",
        "okay",
        "right",
        "sure",
        "alright",
        "cool",
        "nice",
        "wow",
    }
)
# One-letter words; any other lone letter is a fragment.
SINGLE_LETTER_WORDS = frozenset({"i", "a"})
BACKCHANNEL_PHRASES = ("i see", "got it", "go on", "all right", "uh huh", "mm hm", "mm hmm", "makes sense")

_ANNOTATION = re.compile(r"\([^)]*\)|\[[^\]]*\]|\*[^*]*\*")
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def words(text: str) -> list[str]:
    """The words of ``text``, lower-case, without punctuation or annotations."""
    return _WORD.findall(_ANNOTATION.sub(" ", text.lower()))


def content_words(text: str) -> list[str]:
    """The words of ``text`` that are not backchannel, annotations removed."""
    spoken = f" {' '.join(words(text))} "
    for phrase in BACKCHANNEL_PHRASES:
        spoken = spoken.replace(f" {phrase} ", " ")
    return [word for word in spoken.split() if word not in BACKCHANNEL_WORDS and not _fragment(word)]


def _fragment(word: str) -> bool:
    return len(word) == 1 and word.isalpha() and word not in SINGLE_LETTER_WORDS


def says_nothing(text: str) -> bool:
    """True for an empty transcript, a non-speech annotation or a backchannel."""
    return not content_words(text)
