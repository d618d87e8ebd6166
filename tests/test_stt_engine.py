"""The default recognizer on the bundled Whisper tiny.en: both encoder windows, silence, set-up errors."""

from __future__ import annotations

import fractions
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import av
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


def opus_round_trip(pcm16: np.ndarray, bitrate: int) -> np.ndarray:
    """16 kHz speech as an edge hears it from a browser: 48 kHz Opus, 20 ms frames, back to 16 kHz."""
    up = av.AudioResampler(format="s16", layout="mono", rate=48000)
    down = av.AudioResampler(format="s16", layout="mono", rate=16000)
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "mono", "s16"
    encoder.bit_rate, encoder.time_base = bitrate, fractions.Fraction(1, 48000)
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout = 48000, "mono"
    clip = av.AudioFrame.from_ndarray(pcm16.reshape(1, -1), format="s16", layout="mono")
    clip.sample_rate, clip.pts = 16000, 0
    wide = np.concatenate([f.to_ndarray().reshape(-1) for f in up.resample(clip)])
    out: list[np.ndarray] = []
    for start in range(0, wide.size - 960 + 1, 960):
        piece = wide[start : start + 960].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(piece, format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, start
        for packet in encoder.encode(frame):
            for decoded in decoder.decode(packet):
                out += [f.to_ndarray().reshape(-1) for f in down.resample(decoded)]
    return np.concatenate(out).astype(np.float32) / 32768


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


def test_a_doubtful_final_is_redone_in_a_wider_window_before_the_stock_way(
    recognizer: FasterWhisperRecognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    recognizer.trim_window = True
    samples = speech("0930")
    windows: list[int] = []
    encode = recognizer._model.encode
    monkeypatch.setattr(recognizer._model, "encode", lambda f: windows.append(f.shape[-1]) or encode(f))
    looped = iter([True])  # the first window loops, the wider one does not
    monkeypatch.setattr("services.stt.engine.ends_in_loop", lambda tokens: next(looped, False))
    monkeypatch.setattr(recognizer, "_decode_stock", lambda s: pytest.fail("redone the stock way"))
    text = recognizer.transcribe(samples)
    assert word_error_rate(UTTERANCES["0930"].text, text) <= 0.25, text
    assert recognizer.last_doubt == "loop"
    assert len(windows) == 2 and windows[1] == 2 * windows[0], windows  # 100 frames a second


def test_a_final_that_looped_through_opus_is_right_in_the_wider_window(
    recognizer: FasterWhisperRecognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the bench's stt got of 0880 from Chromium: its 5 s window looped here on
    # "ill-disposed" ("an old-s-y-y-y") at 2.6 and 2.9 s, 32 kb/s.
    recognizer.trim_window = True
    through_opus = opus_round_trip(UTTERANCES["0880"].pcm16(), bitrate=32000)
    monkeypatch.setattr(recognizer, "_decode_stock", lambda s: pytest.fail("redone the stock way"))
    for seconds in (2.6, 2.9):
        text = recognizer.transcribe(through_opus[: int(seconds * 16000)])
        assert word_error_rate("he was not an ill disposed young man", text) <= 0.35, text


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


def test_a_decode_that_yields_waits_for_the_urgent_lane_before_each_step(
    recognizer: FasterWhisperRecognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    recognizer.trim_window = True
    urgent_idle = threading.Event()  # the urgent lane is decoding a final
    encoding = threading.Event()
    encode = recognizer._model.encode

    def encode_while_a_new_final_starts(features: np.ndarray) -> object:
        encoding.set()
        urgent_idle.clear()  # the user paused again: the urgent lane is busy again
        return encode(features)

    monkeypatch.setattr(recognizer._model, "encode", encode_while_a_new_final_starts)
    monkeypatch.setattr(recognizer, "yield_to", urgent_idle)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(recognizer.transcribe, speech("0930"), interim=True)
        time.sleep(0.5)  # the whole decode takes ~0.2 s alone
        assert not encoding.is_set() and not pending.done()
        urgent_idle.set()
        assert encoding.wait(5.0)
        time.sleep(0.5)
        assert not pending.done()  # encoded, and now generating waits
        urgent_idle.set()
        text = pending.result(timeout=10)
    assert word_error_rate(UTTERANCES["0930"].text, text) <= 0.25, text


def test_an_abandoned_interim_stops_at_its_next_step_and_a_final_does_not(
    recognizer: FasterWhisperRecognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    recognizer.trim_window = True
    urgent_idle, abandon = threading.Event(), threading.Event()
    generated: list[bool] = []
    whisper = recognizer._model.model

    class CountingWhisper:
        """CTranslate2's Whisper, counting the generate calls (its attributes are read-only)."""

        def __getattr__(self, name: str) -> object:
            return getattr(whisper, name)

        def generate(self, *args: object, **kwargs: object) -> object:
            generated.append(True)
            return whisper.generate(*args, **kwargs)

    def encode_then_the_final_is_published(features: np.ndarray) -> object:
        urgent_idle.clear()  # the urgent lane decodes the utterance's speculative final
        return encode(features)

    encode = recognizer._model.encode
    monkeypatch.setattr(recognizer._model, "model", CountingWhisper())
    monkeypatch.setattr(recognizer._model, "encode", encode_then_the_final_is_published)
    monkeypatch.setattr(recognizer, "yield_to", urgent_idle)
    monkeypatch.setattr(recognizer, "abandon", abandon)
    urgent_idle.set()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(recognizer.transcribe, speech("0930"), interim=True)
        time.sleep(0.5)
        assert not pending.done()  # encoded, waiting for the urgent lane
        abandon.set()  # its transcript is out
        urgent_idle.set()
        assert pending.result(timeout=10) is None
    assert generated == []
    urgent_idle.set()
    text = recognizer.transcribe(speech("0930"))  # abandon concerns interims only
    assert word_error_rate(UTTERANCES["0930"].text, text or "") <= 0.25, text
