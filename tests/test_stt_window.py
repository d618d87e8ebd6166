"""Decoding only the newest seconds of a long utterance and joining them to the partial
before (services/stt/window.py): the joining, the calls it makes, and real speech."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from services.stt.engine import SAMPLE_RATE, FasterWhisperRecognizer, load_recognizer
from services.stt.planner import Outcome
from services.stt.stream import HeardBefore
from services.stt.window import stitch, transcribe_in_window
from tests.support import librivox_utterances, word_error_rate
from tests.test_stt_speculation import continues, paused, take_speculative
from tests.test_stt_stream import ended, feed, planner, take, take_partial_with

UTTERANCES = {u.name.rsplit("-", 1)[-1]: u for u in librivox_utterances()}


def test_the_window_joins_after_the_first_words_it_shares_with_the_partial() -> None:
    before = "Had he married a more amiable woman he"
    # The window's first word is cut mid-word ("ried"): the join looks from its second.
    window = "ried a More amiable woman, he might have been"
    # The shared words keep the partial's spelling; the window's words follow them.
    assert stitch(before, window, 0.3) == "Had he married a more amiable woman, he might have been"


def test_a_window_whose_words_are_nowhere_in_the_partial_joins_nothing() -> None:
    assert stitch("He was not an ill-disposed young man", "something else entirely here", 0.5) is None
    assert stitch("He was not", "man", 0.5) is None  # too few words to anchor


def test_of_several_places_the_words_fit_the_nearest_to_where_the_window_starts_wins() -> None:
    before = "the cat and the dog and the cat and the bird"
    # "cat and" is at word 1 and word 7; the window started about 70 % into the audio.
    assert stitch(before, "he cat and the fish", 0.7) == "the cat and the dog and the cat and the fish"
    assert stitch(before, "he cat and the fish", 0.1) == "the cat and the fish"


class Recorder:
    """A recognizer double that says one text per clip length and notes what it heard."""

    def __init__(self, texts: dict[float, str | None], otherwise: str = "the whole") -> None:
        self.texts = texts
        self.otherwise = otherwise
        self.heard: list[tuple[float, bool]] = []

    def transcribe(self, samples: np.ndarray, *, interim: bool = False) -> str | None:
        seconds = round(samples.size / SAMPLE_RATE, 2)
        self.heard.append((seconds, interim))
        return self.texts.get(seconds, self.otherwise)


def seconds(n: float) -> np.ndarray:
    return np.zeros(int(n * SAMPLE_RATE), dtype=np.float32)


def test_a_long_utterance_is_decoded_only_in_its_window_and_joined() -> None:
    recognizer = Recorder({3.0: "tell me a story about a brave knight"})
    before = HeardBefore("Please tell me a story about", 5.0)
    text, how = transcribe_in_window(recognizer, seconds(6.0), before, interim=False, window_s=3.0)
    assert (text, how) == ("Please tell me a story about a brave knight", "stitched")
    assert recognizer.heard == [(3.0, True)]  # only the window, doubts coming back as None


@pytest.mark.parametrize(
    ("audio_s", "before", "window_s"),
    [
        (3.4, HeardBefore("a b c", 3.0), 3.0),
        (6.0, None, 3.0),
        (6.0, HeardBefore("", 5.0), 3.0),
        (6.0, None, 0),
    ],
)
def test_short_utterances_and_the_first_partial_are_decoded_whole(
    audio_s: float, before: HeardBefore | None, window_s: float
) -> None:
    recognizer = Recorder({})
    text, how = transcribe_in_window(recognizer, seconds(audio_s), before, interim=True, window_s=window_s)
    assert (text, how) == ("the whole", "whole")
    assert recognizer.heard == [(audio_s, True)]


def test_a_window_that_joins_nowhere_is_decoded_whole_after_all() -> None:
    recognizer = Recorder({3.0: "words never said before"})
    text, how = transcribe_in_window(
        recognizer, seconds(6.0), HeardBefore("a b c d", 5), interim=True, window_s=3.0
    )
    assert (text, how) == ("the whole", "unanchored")
    assert recognizer.heard == [(3.0, True), (6.0, True)]


def test_a_doubtful_window_gives_no_interim_and_a_whole_final() -> None:
    before = HeardBefore("a b c d", 5.0)
    interim = Recorder({3.0: None})
    assert transcribe_in_window(interim, seconds(6.0), before, interim=True, window_s=3.0) == (
        None,
        "doubtful",
    )
    assert interim.heard == [(3.0, True)]  # the next partial comes soon: no second decode
    final = Recorder({3.0: None})
    assert transcribe_in_window(final, seconds(6.0), before, interim=False, window_s=3.0) == (
        "the whole",
        "doubtful",
    )
    assert final.heard == [(3.0, True), (6.0, False)]


@pytest.fixture(scope="module")
def recognizer() -> Iterator[FasterWhisperRecognizer]:
    yield load_recognizer("", cpu_threads=1, silence_rms=0.003, trim_window=True)


def test_real_speech_two_sentences_long_is_heard_through_its_window(
    recognizer: FasterWhisperRecognizer,
) -> None:
    first, second = UTTERANCES["0870"], UTTERANCES["0890"]
    audio = np.concatenate([first.pcm16(), second.pcm16()]).astype(np.float32) / 32768
    # The partial before heard all but the last 0.6 s, as a partial 300 ms of audio
    # apart does at a pause; the final then decodes only the last 3 s.
    heard_s = audio.size / SAMPLE_RATE - 0.6
    partial = recognizer.transcribe(audio[: int(heard_s * SAMPLE_RATE)], interim=True)
    assert partial
    text, how = transcribe_in_window(
        recognizer, audio, HeardBefore(partial, heard_s), interim=False, window_s=3.0
    )
    assert how == "stitched"
    assert text is not None and text.startswith(partial.split()[0])
    reference = f"{first.text} {second.text}"
    assert word_error_rate(reference, text) < 0.2, text


def test_each_decode_starts_from_the_newest_partial_of_its_utterance_even_across_a_pause() -> None:
    p = planner()
    feed(p, 1, 15)  # 0.3 s
    first = take_partial_with(p, "Please tell")
    assert first.heard_before is None  # nothing heard before the first partial
    feed(p, 1, 15)
    second = take_partial_with(p, "Please tell me a")
    assert second.heard_before == HeardBefore("Please tell", 0.3)
    p.on_speech_paused(paused(1, frame_count=30), 1.0)
    speculative = take_speculative(p, 1.0, "Please tell me a")
    assert speculative.heard_before == HeardBefore("Please tell me a", 0.6)
    # The user goes on: the continuing generation starts from the same partial.
    assert p.on_speech_started(continues(2, 1), 1.1) is Outcome.ACCEPTED
    feed(p, 2, 15, now=1.1)
    p.on_speech_ended(ended(2, frame_count=15), now=1.5)
    final = take(p, 1.5)
    assert (final.kind, final.text) == ("final", None)
    assert final.heard_before == HeardBefore("Please tell me a", 0.6)
