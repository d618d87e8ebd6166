"""Decoding only the newest seconds of a long utterance, joined to the words before.

Whisper is not streaming: each partial decodes the whole utterance again, so a partial
of 6 s of speech took ~500 ms in the bench, more than the 300 ms between partials, and
the one in flight at a pause slowed the speculative final beside it. Past
``window_s + MIN_GAIN_S`` of audio, a decode here hears only the last ``window_s``
and stitches that text to the utterance's newest partial: the window's words that
follow the first run of ``ANCHOR_WORDS`` words found in both replace what the partial
said from there on. The window's first words may be cut mid-word, so the run is looked
for from the window's second word, up to ``MAX_SKIPPED_WORDS`` in. Where no run is found
(the window heard other words), the whole utterance is decoded as before.

Pure but for the recognizer calls, which block: run it in the lane's thread.
"""

from __future__ import annotations

import re

import numpy as np

from services.stt.engine import SAMPLE_RATE, SpeechRecognizer
from services.stt.stream import HeardBefore

ANCHOR_WORDS = 2
MAX_SKIPPED_WORDS = 3
# A window this much shorter than the utterance at least: below it, decoding the
# whole utterance costs about as much (Whisper's encoder window has a 5 s floor).
MIN_GAIN_S = 0.5


def _key(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


def stitch(before: str, window: str, window_start: float) -> str | None:
    """``before``'s words up to where ``window``'s words join them, then ``window``'s;
    None when no ``ANCHOR_WORDS`` of the window (from its second word) are in ``before``.
    ``window_start`` (0-1) is where in ``before``'s audio the window starts: of several
    places the words fit, the nearest to it wins."""
    earlier, later = before.split(), window.split()
    earlier_keys, later_keys = [_key(w) for w in earlier], [_key(w) for w in later]
    expected = window_start * len(earlier)
    for skipped in range(1, min(MAX_SKIPPED_WORDS, len(later) - ANCHOR_WORDS) + 1):
        anchor = later_keys[skipped : skipped + ANCHOR_WORDS]
        if not all(anchor):
            continue  # punctuation alone anchors nothing
        places = [
            at
            for at in range(len(earlier) - ANCHOR_WORDS + 1)
            if earlier_keys[at : at + ANCHOR_WORDS] == anchor
        ]
        if places:
            at = min(places, key=lambda place: abs(place - expected))
            # The anchor keeps the earlier spelling, so the partial's words up to it
            # stay as they were (the llm's primed prompt with them).
            return " ".join(earlier[: at + ANCHOR_WORDS] + later[skipped + ANCHOR_WORDS :])
    return None


def transcribe_in_window(
    recognizer: SpeechRecognizer,
    samples: np.ndarray,
    heard_before: HeardBefore | None,
    *,
    interim: bool,
    window_s: float,
) -> tuple[str | None, str]:
    """(text, how): "whole" (not windowed), "stitched", "unanchored" (the window's words
    fit nowhere: the whole utterance decoded after all) or "doubtful" (the window's
    text was not trusted: an interim gives None, a final decodes the whole utterance)."""
    audio_s = samples.size / SAMPLE_RATE
    if window_s <= 0 or heard_before is None or not heard_before.text or audio_s < window_s + MIN_GAIN_S:
        return recognizer.transcribe(samples, interim=interim), "whole"
    window = recognizer.transcribe(samples[-int(window_s * SAMPLE_RATE) :], interim=True)
    if window is None:
        return (None if interim else recognizer.transcribe(samples, interim=False)), "doubtful"
    window_start = min(1.0, max(0.0, (audio_s - window_s) / max(heard_before.audio_s, 1e-3)))
    stitched = stitch(heard_before.text, window, window_start) if window else None
    if stitched is None:
        return recognizer.transcribe(samples, interim=interim), "unanchored"
    return stitched, "stitched"
