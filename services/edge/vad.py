"""Silero VAD on onnxruntime, without torch.

The model file ships inside the ``silero-vad`` wheel; importing that package
would pull in torch, so only its data folder is located. At 16 kHz the model
takes 512 new samples plus the previous 64 (its context) and a recurrent state.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from services.common.errors import StartupError

SAMPLE_RATE = 16000
WINDOW = 512
CONTEXT = 64


def model_path() -> Path:
    """The ONNX file in the installed silero-vad wheel."""
    spec = importlib.util.find_spec("silero_vad")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "data" / "silero_vad.onnx"
        if path.exists():
            return path
    raise StartupError("silero_vad.onnx not found: install silero-vad (pip install --no-deps silero-vad)")


class SileroModel:
    """One ONNX session shared by all sessions; each session keeps its own state."""

    def __init__(self, path: Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # The edge shares a few cores with the models; a 32 ms window takes ~0.1 ms anyway.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session: Any = ort.InferenceSession(
            str(path or model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def run(
        self, window: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[float, npt.NDArray[np.float32]]:
        """Speech probability of one (1, 576) window and the next state."""
        out, new_state = self._session.run(None, {"input": window, "state": state, "sr": self._sr})
        return float(out[0][0]), new_state

    def stream(self) -> VadStream:
        return VadStream(self)

    def warm_up(self) -> None:
        """The first run is slow (allocations): do it before the first caller."""
        stream = self.stream()
        for _ in range(3):
            stream.push(np.zeros(WINDOW, dtype=np.int16))


class VadStream:
    """Probabilities for a stream of 16 kHz PCM16 of any frame size."""

    def __init__(self, model: SileroModel) -> None:
        self._model = model
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.probability = 0.0

    def push(self, pcm: npt.NDArray[np.int16]) -> float:
        """Feed samples; returns the probability of the newest complete window
        (the previous one while a window is still filling)."""
        samples = pcm.astype(np.float32) / 32768.0
        self._pending = np.concatenate([self._pending, samples])
        while self._pending.size >= WINDOW:
            chunk = self._pending[:WINDOW]
            self._pending = self._pending[WINDOW:]
            window = np.concatenate([self._context, chunk])[np.newaxis, :]
            self.probability, self._state = self._model.run(window, self._state)
            self._context = chunk[-CONTEXT:]
        return self.probability
