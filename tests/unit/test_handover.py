"""The floor handover protocol on an in-memory room: one voice at a time, no silence."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from livekit.agents import llm

from agent.handover.protocol import (
    CONTEXT_RPC,
    FLOOR_RPC,
    MAX_TRANSFER_BYTES,
    Outcome,
    RpcFailed,
    Transfer,
    declare_ready,
    fetch_transfer,
    floor_release,
    hand_over,
    wait_for_floor,
)
from harness.fakes.room import MemoryRoom, RoomHub

OUT, IN, HID = "tutor-orchestrator", "tutor-english", "h1"
TIMEOUT = 2.0


@dataclass
class Incoming:
    """Simulates the dispatched worker: joins after `join_after`, prepares, takes over."""

    hub: RoomHub
    join_after: float = 0.0
    prepare_for: float = 0.0
    never_ready: bool = False
    answer_for: float = 0.05
    handover_id: str = HID
    transfer: Transfer | None = None
    took_floor: bool | None = None
    task: asyncio.Task[None] | None = None
    dispatches: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    slow_cancel: bool = False  # the cancel waits until this tutor has asked to take over
    asked: asyncio.Event = field(default_factory=asyncio.Event)
    listens_for_release: bool = True  # False: an incoming tutor that waits for the departure

    async def dispatch(self) -> str:
        self.dispatches.append("AD_1")
        self.task = asyncio.create_task(self.run())
        return "AD_1"

    async def cancel(self, dispatch: str) -> None:
        if self.slow_cancel:
            await asyncio.wait_for(self.asked.wait(), TIMEOUT)
        self.cancelled.append(dispatch)

    async def run(self) -> None:
        await asyncio.sleep(self.join_after)  # simulated job assignment and connect
        room = await self.hub.join(IN)
        self.transfer = await fetch_transfer(
            room, outgoing=OUT, handover_id=self.handover_id, timeout=TIMEOUT
        )
        await asyncio.sleep(self.prepare_for)  # simulated model session start
        if self.never_ready:
            return
        with floor_release(room, outgoing=OUT, handover_id=self.handover_id) as released:
            self.took_floor = await declare_ready(
                room, outgoing=OUT, handover_id=self.handover_id, timeout=TIMEOUT
            )
            self.asked.set()
            if not self.took_floor:
                await room.leave()
                return
            await wait_for_floor(
                room,
                outgoing=OUT,
                timeout=TIMEOUT,
                released=released if self.listens_for_release else None,
            )
        async with room.speaking():
            await asyncio.sleep(self.answer_for)


async def speak(room: MemoryRoom, seconds: float) -> None:
    async with room.speaking():
        await asyncio.sleep(seconds)


async def run_outgoing(
    hub: RoomHub,
    incoming: Incoming,
    *,
    line_for: float,
    ready_timeout=TIMEOUT,
    closing_for: float = 0.0,
):
    """The outgoing tutor; `closing_for`: how long its session takes to close before it
    leaves (on a real server 0.1-0.3 s)."""
    room = await hub.join(OUT)
    announcement = asyncio.create_task(speak(room, line_for))
    result = await hand_over(
        room,
        handover_id=HID,
        transfer=lambda: Transfer(HID, [("assistant", "Hi!"), ("user", "What is a noun?")]),
        dispatch=incoming.dispatch,
        cancel_dispatch=incoming.cancel,
        announcement_done=announcement,
        ready_timeout=ready_timeout,
    )
    if result.outcome is Outcome.HANDED_OVER:
        await asyncio.sleep(closing_for)  # simulated session close
        await room.leave()
    else:
        await announcement
    if incoming.task is not None:
        await incoming.task
    return result


def done_future() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def silence_gap(hub: RoomHub) -> float:
    (_, line_end), *_ = hub.speech_spans(OUT)
    (answer_start, _), *_ = hub.speech_spans(IN)
    return answer_start - line_end


@pytest.mark.parametrize(
    ("join_after", "line_for"),
    [(0.0, 0.2), (0.2, 0.05)],
    ids=["incoming-ready-during-announcement", "incoming-ready-after-announcement"],
)
async def test_floor_passes_with_one_speaker_at_a_time(
    join_after: float, line_for: float, record_property: pytest.RecordProperty
) -> None:
    hub = RoomHub()
    incoming = Incoming(hub, join_after=join_after)
    result = await run_outgoing(hub, incoming, line_for=line_for)

    assert result.outcome is Outcome.HANDED_OVER
    assert hub.max_concurrent_speakers() == 1
    assert incoming.took_floor is True
    assert hub.present() == [IN]  # the outgoing tutor left; nobody idle stays behind
    assert not hub.cut_short(OUT)  # it finished its announcement before leaving
    gap = silence_gap(hub)
    record_property("silence_gap_s", round(gap, 4))
    print(f"silence gap {gap * 1000:.1f} ms")
    assert gap >= 0
    # the outgoing tutor left before the incoming one spoke
    leave = next(e.at for e in hub.timeline if e.identity == OUT and e.what == "leave")
    assert leave <= hub.speech_spans(IN)[0][0]


@pytest.mark.parametrize("listens", [True, False], ids=["released", "departure-only"])
async def test_the_incoming_tutor_speaks_when_the_line_ends_not_when_the_outgoing_has_left(
    listens: bool,
) -> None:
    """The outgoing tutor's session takes a while to close: the floor passes at its word
    that the line is over, and only an incoming tutor that does not listen for it waits."""
    hub = RoomHub()
    incoming = Incoming(hub, listens_for_release=listens)
    result = await run_outgoing(hub, incoming, line_for=0.1, closing_for=0.3)

    assert result.outcome is Outcome.HANDED_OVER
    assert hub.max_concurrent_speakers() == 1 and not hub.cut_short(OUT)
    leave = next(e.at for e in hub.timeline if e.identity == OUT and e.what == "leave")
    answer = hub.speech_spans(IN)[0][0]
    assert (answer < leave) is listens
    assert silence_gap(hub) >= 0


async def test_only_the_outgoing_tutor_may_release_the_floor() -> None:
    hub = RoomHub()
    incoming_room = await hub.join(IN)
    stranger = await hub.join("agent-stranger")
    await hub.join(OUT)
    with floor_release(incoming_room, outgoing=OUT, handover_id=HID) as released:
        with pytest.raises(RpcFailed):
            await stranger.call_rpc(IN, FLOOR_RPC, HID, TIMEOUT)
        assert not released.is_set()
        assert (
            await wait_for_floor(incoming_room, outgoing=OUT, timeout=0.05, released=released)
            is False
        )


async def test_incoming_receives_the_conversation_so_far() -> None:
    hub = RoomHub()
    incoming = Incoming(hub)
    await run_outgoing(hub, incoming, line_for=0.05)

    assert incoming.transfer is not None
    assert incoming.transfer.turns[-1] == ("user", "What is a noun?")
    assert incoming.transfer.has_student_turn


async def test_not_ready_in_time_cancels_the_dispatch_and_outgoing_keeps_the_floor() -> None:
    hub = RoomHub()
    incoming = Incoming(hub, never_ready=True)
    result = await run_outgoing(hub, incoming, line_for=0.05, ready_timeout=0.3)

    assert result.outcome is Outcome.NOT_READY
    assert incoming.cancelled == ["AD_1"]
    assert OUT in hub.present()
    assert hub.speech_spans(IN) == []


async def test_late_ready_after_a_timeout_is_told_to_leave_without_speaking() -> None:
    hub = RoomHub()
    incoming = Incoming(hub, prepare_for=0.5)
    result = await run_outgoing(hub, incoming, line_for=0.05, ready_timeout=0.2)

    assert result.outcome is Outcome.NOT_READY
    # the outgoing tutor is still in the room (it fell back), so its "cancelled" is heard
    assert incoming.took_floor is False
    assert IN not in hub.present()
    assert hub.speech_spans(IN) == []


async def test_ready_racing_the_timeout_is_answered_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = RoomHub()
    incoming = Incoming(hub, prepare_for=0.3, slow_cancel=True)
    with caplog.at_level("WARNING", logger="tutor.handover"):
        result = await run_outgoing(hub, incoming, line_for=0.05, ready_timeout=0.1)

    assert result.outcome is Outcome.NOT_READY
    assert incoming.took_floor is False
    # an explicit "cancelled" answer, not a failed RPC
    assert not any("not acknowledged" in r.getMessage() for r in caplog.records)
    assert hub.speech_spans(IN) == []


async def test_a_duplicate_incoming_tutor_is_told_to_leave(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # two jobs for one handover (a dispatch created twice) ask for the floor
    hub = RoomHub()
    out = await hub.join(OUT)
    twin_a, twin_b = await hub.join("twin-a"), await hub.join("twin-b")
    dispatched = asyncio.Event()
    line_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def dispatch() -> str:
        dispatched.set()
        return "AD_1"

    handing_over = asyncio.create_task(
        hand_over(
            out,
            handover_id=HID,
            transfer=lambda: Transfer(HID),
            dispatch=dispatch,
            cancel_dispatch=lambda _d: asyncio.sleep(0),
            announcement_done=line_done,
            ready_timeout=TIMEOUT,
        )
    )
    await dispatched.wait()
    with caplog.at_level("WARNING", logger="tutor.handover"):
        first = await declare_ready(twin_a, outgoing=OUT, handover_id=HID, timeout=TIMEOUT)
        second = await declare_ready(twin_b, outgoing=OUT, handover_id=HID, timeout=TIMEOUT)
    line_done.set_result(None)
    result = await handing_over

    assert result.outcome is Outcome.HANDED_OVER
    assert (first, second) == (True, False)
    assert not any("not acknowledged" in r.getMessage() for r in caplog.records)


async def test_dispatch_failure_falls_back_without_waiting_for_the_timeout() -> None:
    hub = RoomHub()
    room = await hub.join(OUT)
    loop = asyncio.get_running_loop()

    async def failing_dispatch() -> str:
        raise RuntimeError("dispatch API unavailable")

    started = loop.time()
    result = await hand_over(
        room,
        handover_id=HID,
        transfer=lambda: Transfer(HID),
        dispatch=failing_dispatch,
        cancel_dispatch=lambda _d: asyncio.sleep(0),
        announcement_done=done_future(),
        ready_timeout=30.0,
    )
    assert result.outcome is Outcome.DISPATCH_FAILED
    assert loop.time() - started < 30.0


async def test_a_join_for_an_unknown_handover_gets_no_transfer_and_no_floor() -> None:
    hub = RoomHub()
    incoming = Incoming(hub, handover_id="other")  # a transfer for another handover
    result = await run_outgoing(hub, incoming, line_for=0.05, ready_timeout=0.3)

    assert incoming.transfer is None
    # its ready for an unknown handover is refused too: the outgoing tutor falls back
    assert result.outcome is Outcome.NOT_READY


async def test_ready_to_a_departed_outgoing_tutor_takes_the_floor() -> None:
    hub = RoomHub()
    room = await hub.join(IN)
    assert await declare_ready(room, outgoing=OUT, handover_id=HID, timeout=0.1) is True
    assert await wait_for_floor(room, outgoing=OUT, timeout=0.1) is True


async def test_ready_unanswered_by_a_present_outgoing_tutor_does_not_take_the_floor() -> None:
    hub = RoomHub()
    await hub.join(OUT)  # present, but not handing over (no RPC handlers)
    room = await hub.join(IN)
    assert await declare_ready(room, outgoing=OUT, handover_id=HID, timeout=0.1) is False
    assert await wait_for_floor(room, outgoing=OUT, timeout=0.05) is False


async def test_transfer_fetch_times_out_when_outgoing_never_answers() -> None:
    hub = RoomHub()
    out = await hub.join(OUT)
    never = asyncio.Event()

    async def stuck(_caller: str, _payload: str) -> str:
        await never.wait()
        return ""

    out.register_rpc(CONTEXT_RPC, stuck)
    room = await hub.join(IN)
    assert await fetch_transfer(room, outgoing=OUT, handover_id=HID, timeout=0.1) is None


def test_transfer_keeps_the_newest_turns_within_the_size_bound() -> None:
    history = llm.ChatContext.empty()
    for i in range(200):
        history.add_message(role="user", content=f"question {i} " + "é" * 300)
        history.add_message(role="assistant", content=f"answer {i}")
    history.add_message(role="system", content="instructions are not transferred")

    transfer = Transfer.from_history(HID, history)

    assert len(transfer.to_json().encode()) <= MAX_TRANSFER_BYTES
    assert transfer.turns[-1] == ("assistant", "answer 199")
    assert all(role in ("user", "assistant") for role, _ in transfer.turns)
    assert Transfer.from_json(transfer.to_json()) == transfer
