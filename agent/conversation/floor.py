"""An audio output that holds a tutor's audio until the floor is free, then lets it play.

A tutor that joins through a floor handover must not be heard before the outgoing tutor has
left, but it should not wait to start preparing either. A realtime model is only asked once
its speech may play, so holding the speech queue (what pipeline tutors do) would also hold
the request; instead its speech plays at once into this gate, which keeps the frames and
releases them, in order, the moment the floor is free. The framework pauses and resumes the
output below for its own reasons; this gate is separate from that.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from livekit import rtc
from livekit.agents.voice import io

_Flush = Literal["flush"]


class FloorGate(io.AudioOutput):
    """Passes audio to `next_in_chain` once `floor` is set; until then keeps it."""

    def __init__(self, next_in_chain: io.AudioOutput, floor: asyncio.Event) -> None:
        super().__init__(
            label="FloorGate",
            capabilities=io.AudioOutputCapabilities(pause=next_in_chain.can_pause),
            next_in_chain=next_in_chain,
            sample_rate=next_in_chain.sample_rate,
        )
        self._held: list[rtc.AudioFrame | _Flush] = []
        self._open = floor.is_set()
        self._opening: asyncio.Task[None] | None = None
        if not self._open:
            self._opening = asyncio.create_task(self._open_on(floor), name="floor_gate")

    @property
    def holding(self) -> bool:
        return not self._open

    async def _open_on(self, floor: asyncio.Event) -> None:
        await floor.wait()
        assert self.next_in_chain is not None
        while self._held:
            item = self._held.pop(0)
            if item == "flush":
                self.next_in_chain.flush()
            else:
                await self.next_in_chain.capture_frame(item)
        self._open = True

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        assert self.next_in_chain is not None
        if self._open:
            await self.next_in_chain.capture_frame(frame)
        else:
            self._held.append(frame)

    def flush(self) -> None:
        super().flush()
        assert self.next_in_chain is not None
        if self._open:
            self.next_in_chain.flush()
        else:
            self._held.append("flush")

    def clear_buffer(self) -> None:
        assert self.next_in_chain is not None
        if not self._open:
            # segments that never reached the output: finished, interrupted, unheard
            for item in self._held:
                if item == "flush":
                    self.on_playback_finished(playback_position=0.0, interrupted=True)
            self._held.clear()
        self.next_in_chain.clear_buffer()
