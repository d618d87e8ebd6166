"""The default recognizer on the bundled Whisper tiny.en: both encoder windows, silence, set-up errors."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from services.common.errors import StartupError
from services.stt.engine import FasterWhisperRecognizer, load_recognizer, resolve_model_path
from tests.support import librivox_utterances, word_error_rate

UTTERANCES = {u.name.rsplit("-", 1)[-1]: u for u in librivox_utterances()}


@pytest.fixture(scope="module")
def recognizer() -> Iterator[FasterWhisperRecognizer]:
    engine = load_recognizer("", cpu_threads=1, silence_rms=0.003, trim_window=True)
    yield engine
    engine.trim_window = True


def speech(name: str) -> np.ndarray:
    return UTTERANCES[name].pcm16().astype(np.float32) / 32768


def test_missing_model_is_a_one_line_startup_error(tmp_path: object) -> None:
    with pytest.raises(StartupError) as error:
        resolve_model_path(str(tmp_path))
    message = str(error.value)
    assert "STT_MODEL_PATH" in message and "\n" not in message


@pytest.mark.parametrize("trim_window", [True, False])
def test_both_windows_transcribe_speech(recognizer: FasterWhisperRecognizer, trim_window: bool) -> None:
    recognizer.trim_window = trim_window
    utterance = UTTERANCES["0920"]
    text = recognizer.transcribe(speech("0920"))
    assert word_error_rate(utterance.text, text) <= 0.25, text


def test_short_partials_do_not_loop(recognizer: FasterWhisperRecognizer) -> None:
    # Whisper given a too-short window repeated "He was not. He was not. ..." here.
    samples = speech("0880")
    for seconds in (0.6, 0.9, 1.2):
        words = recognizer.transcribe(samples[: int(seconds * 16000)]).lower().split()
        assert len(words) <= 4, words


@pytest.mark.parametrize("level", [0.0, 0.002, 0.02, 0.1])
def test_noise_and_silence_give_no_text(recognizer: FasterWhisperRecognizer, level: float) -> None:
    noise = np.random.default_rng(1).normal(0, level, 2 * 16000).astype(np.float32)
    assert recognizer.transcribe(noise) == ""


def test_a_loop_at_the_end_is_told_from_ordinary_text() -> None:
    from services.stt.engine import ends_in_loop

    assert ends_in_loop([5, 9, 12, 7, 7, 7, 7])  # one token four times over
    assert ends_in_loop([1, 2, 3, 4, 12, 13, 12, 13, 12, 13, 12, 13])  # "-y-y-y-y"
    assert ends_in_loop([8, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3])
    assert not ends_in_loop([1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert not ends_in_loop([7, 7, 7])  # too short to tell
    assert not ends_in_loop([4, 7, 7, 7, 5])


def test_a_doubtful_final_is_redone_the_stock_way_and_a_doubtful_partial_dropped(
    recognizer: FasterWhisperRecognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    recognizer.trim_window = True
    samples = speech("0930")
    assert recognizer.transcribe(samples, interim=True)
    assert recognizer.last_doubt == ""  # clean speech: the fitted window is trusted
    stock: list[int] = []
    monkeypatch.setattr("services.stt.engine.ends_in_loop", lambda tokens: True)
    monkeypatch.setattr(recognizer, "_decode_stock", lambda s: stock.append(s.size) or "stock text")
    assert recognizer.transcribe(samples) == "stock text"
    assert (recognizer.last_doubt, stock) == ("loop", [samples.size])
    assert recognizer.transcribe(samples, interim=True) is None
    assert (recognizer.last_doubt, stock) == ("loop", [samples.size])  # no second stock decode
    recognizer.transcribe(np.zeros(16000, dtype=np.float32))
    assert recognizer.last_doubt == ""  # each call starts afresh
