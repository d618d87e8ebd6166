"""LLM tokens in, speakable text chunks out (pure: no I/O, no clocks).

The first chunk goes out early, so tts can start speaking while the model is
still writing: at the first clause boundary after 2 words, or after
``first_words`` words. Later chunks end at sentence ends (or line breaks), or
after ``max_words`` words, preferring the last clause boundary; the second after
at most four times ``first_words``: a chunk plays for ~0.3 s a word, and the
next must be written (~0.05 s a word here) and synthesized before it ends. A boundary is
only certain once the whitespace after it has arrived ("3." may become "3.5").
Markdown and emoji, which a TTS would read out or choke on, are stripped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

# Three: the first chunk comes ~80 ms sooner than with five (bench runs 20261124-120644
# and -121108: first token -> first chunk p50 203 / p90 239 ms against 281 / 403), and
# the replies have no longer silences for it (longest in a reply's first 3 s: p90 311
# against 318 ms).
FIRST_CHUNK_WORDS = 3
CHUNK_MAX_WORDS = 20


class _Kind(IntEnum):
    WORD = 0
    CLAUSE = 1
    SENTENCE = 2


@dataclass(frozen=True)
class _Boundary:
    end: int  # where a chunk would be cut: just after the word
    words: int  # speakable words before ``end``
    kind: _Kind


_SENTENCE_END = ".!?…"
_CLAUSE_END = ",;:"
_CLOSERS = "\"')]}”’»*_`"
# "Dr. Smith": a period after these does not end a sentence.
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "approx"})

_INITIALS = re.compile(r"(?:[A-Za-z]\.){2,}")  # "U.S.", "e.g.": not a sentence end
_WORD = re.compile(r"(\S+)(\s+)")
_SPEAKABLE = re.compile(r"\w", re.UNICODE)
_LIST_NUMBER = re.compile(r"\d+[.)]")

_FENCE = re.compile(r"```[\w+-]*")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_RULE = re.compile(r"\n[ \t]*[-*_]{3,}[ \t]*(?=\n|\Z)")
_LINE_MARKER = re.compile(r"\n[ \t]*(?:#{1,6}|>|[-*+•]|\d+[.)])[ \t]+")
_MARKUP = re.compile(r"[*`#]+|~~|(?<!\w)_+|_+(?!\w)")
_SPACE_BEFORE_PUNCT = re.compile(r" ([,.;:!?…])")
_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, flags, symbols
    "\U00002600-\U000027bf"  # misc symbols, dingbats
    "\U00002300-\U000023ff"  # technical (watch, hourglass)
    "\U00002b00-\U00002bff"  # arrows, stars
    "\ufe00-\ufe0f\u200d\u20e3"  # variation selectors, joiner, keycap
    "\U000e0020-\U000e007f"  # tag characters (subdivision flags)
    "]"
)


def speakable(text: str, *, line_start: bool = True) -> str:
    """``text`` without markdown, bullets and emoji, whitespace collapsed.

    List and heading markers count only at the start of a line; pass
    ``line_start=False`` when ``text`` continues a line.
    """
    if line_start:
        text = "\n" + text
    text = _FENCE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _RULE.sub("\n", text)
    text = _LINE_MARKER.sub("\n", text)
    text = _MARKUP.sub("", text)
    text = _EMOJI.sub("", text)
    # Removed emoji or markup can leave "well ." behind.
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split()))


def _is_list_number(buf: str, match: re.Match[str]) -> bool:
    """A "1." or "2)" opening a line: a list marker, not a word or a sentence end."""
    if not _LIST_NUMBER.fullmatch(match.group(1)):
        return False
    return buf[: match.start(1)].rstrip(" \t").endswith("\n")


def _kind(word: str, gap: str) -> _Kind:
    if "\n" in gap:
        return _Kind.SENTENCE  # list items and headings end without a period
    bare = word.rstrip(_CLOSERS)
    if bare and bare[-1] in _SENTENCE_END:
        stem = bare.lstrip("(\"'")
        if stem[:-1].lower() in _ABBREVIATIONS or _INITIALS.fullmatch(stem):
            return _Kind.WORD
        return _Kind.SENTENCE
    if bare and bare[-1] in _CLAUSE_END:
        return _Kind.CLAUSE
    return _Kind.WORD


def _boundaries(buf: str) -> Iterator[_Boundary]:
    """Every complete word of ``buf`` (whitespace after it has arrived)."""
    words = 0
    for match in _WORD.finditer(buf):
        if _is_list_number(buf, match):
            continue
        if _SPEAKABLE.search(_EMOJI.sub("", match.group(1))):
            words += 1
        yield _Boundary(match.end(1), words, _kind(match.group(1), match.group(2)))


class Chunker:
    """Feed tokens with ``push``; call ``flush`` once the reply is complete."""

    def __init__(self, first_words: int = FIRST_CHUNK_WORDS, max_words: int = CHUNK_MAX_WORDS) -> None:
        self._first_words = max(1, first_words)
        self._max_words = max(1, max_words)
        self._second_words = min(self._max_words, 4 * self._first_words)
        # A leading newline marks the reply's start as a line start (bullets).
        self._buf = "\n"
        self.emitted = 0

    def push(self, token: str) -> list[str]:
        """Chunks completed by ``token`` (often none)."""
        self._buf += token
        chunks: list[str] = []
        while (cut := self._next_cut()) is not None:
            raw, self._buf = self._buf[:cut], self._buf[cut:]
            self._add(raw, chunks)
        return chunks

    def flush(self) -> str:
        """The rest of the reply as one chunk ("" if nothing speakable is left)."""
        raw, self._buf = self._buf, ""
        chunks: list[str] = []
        self._add(raw, chunks)
        return chunks[0] if chunks else ""

    def _add(self, raw: str, chunks: list[str]) -> None:
        text = speakable(raw, line_start=False)
        if text:  # a chunk of pure markup ("---") says nothing: skip it
            chunks.append(text)
            self.emitted += 1

    def _next_cut(self) -> int | None:
        first = self.emitted == 0
        limit = (self._first_words, self._second_words)[self.emitted] if self.emitted < 2 else self._max_words
        # A fallback pause must not leave a tiny fragment ("So,", "Sure,") as a chunk of
        # its own; a one-word sentence ("Hi!") may be one.
        min_pause_words = 1 if first else max(1, limit // 2)
        pause: int | None = None
        for boundary in _boundaries(self._buf):
            if boundary.words == 0:
                continue  # only markup so far: nothing to say yet
            if boundary.kind == _Kind.SENTENCE and (boundary.words >= 2 or not first):
                return boundary.end
            if first and boundary.kind == _Kind.CLAUSE and boundary.words >= 2:
                return boundary.end
            lone_clause = first and boundary.kind == _Kind.CLAUSE and boundary.words < 2
            if boundary.kind != _Kind.WORD and boundary.words >= min_pause_words and not lone_clause:
                pause = boundary.end
            if boundary.words >= limit:
                return pause if pause is not None else boundary.end
        return None
