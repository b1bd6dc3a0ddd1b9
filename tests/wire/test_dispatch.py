"""The dispatch client: against a mocked API, and the real LiveKitAPI on a local Twirp server."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from unittest.mock import AsyncMock, MagicMock

import pytest
from livekit.api import AgentDispatch, CreateAgentDispatchRequest, TwirpError

from agent.dispatch.client import Dispatcher, DispatchError, DispatchPolicy
from agent.telemetry import metrics
from harness.fakes.twirp import TwirpDispatchServer

FAST = DispatchPolicy(attempt_timeout=0.3, max_attempts=3, backoff_base=0.01, backoff_max=0.05)
AGENT = "learning-english"
ROOM = "room-1"
QUESTION = "What is a noun?"
METADATA = f"session:abc|handover:h-1|question:{QUESTION}"


@pytest.fixture
async def server() -> AsyncIterator[TwirpDispatchServer]:
    async with TwirpDispatchServer() as fake:
        yield fake


@pytest.fixture
async def dispatcher(server: TwirpDispatchServer) -> AsyncIterator[Dispatcher]:
    async with server.dispatcher(policy=FAST) as client:
        yield client


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def mock_api(create: AsyncMock) -> MagicMock:
    api = MagicMock()
    api.agent_dispatch.create_dispatch = create
    api.agent_dispatch.list_dispatch = AsyncMock(return_value=[])
    api.aclose = AsyncMock()
    return api


async def dispatch(client: Dispatcher, metadata: str = METADATA) -> AgentDispatch:
    return await client.dispatch(agent_name=AGENT, room=ROOM, metadata=metadata)


# against a mocked API


async def test_create_request_carries_agent_room_and_metadata() -> None:
    create = AsyncMock(return_value=AgentDispatch(id="AD_9", agent_name=AGENT, room=ROOM))
    client = Dispatcher(mock_api(create), policy=FAST)

    result = await dispatch(client)

    assert result.id == "AD_9"
    create.assert_awaited_once()
    (request,) = create.await_args.args
    assert isinstance(request, CreateAgentDispatchRequest)
    assert (request.agent_name, request.room, request.metadata) == (AGENT, ROOM, METADATA)
    assert client.attempts == 1


@pytest.mark.parametrize(
    "error",
    [TwirpError("permission_denied", "no", status=403), ValueError("unexpected")],
    ids=["403", "unexpected"],
)
async def test_rejections_and_unexpected_errors_are_not_retried(error: Exception) -> None:
    create = AsyncMock(side_effect=error)
    client = Dispatcher(mock_api(create), policy=FAST)

    with pytest.raises(DispatchError) as caught:
        await dispatch(client)

    assert (caught.value.retryable, caught.value.attempts) == (False, 1)
    assert caught.value.__cause__ is error
    assert create.await_count == 1


async def test_aclose_leaves_an_injected_api_open() -> None:
    api = mock_api(AsyncMock())
    await Dispatcher(api).aclose()
    api.aclose.assert_not_awaited()


def test_backoff_doubles_up_to_the_cap_and_jitter_stays_below_it() -> None:
    policy = DispatchPolicy(backoff_base=0.2, backoff_max=1.0)
    assert [policy.backoff(n) for n in range(1, 5)] == [0.2, 0.4, 0.8, 1.0]
    jittered = DispatchPolicy(backoff_base=0.2, backoff_max=1.0, jitter=True)
    assert all(0.0 <= jittered.backoff(3) <= 0.8 for _ in range(50))


# the real LiveKitAPI against the local Twirp server


async def test_first_attempt_creates_one_dispatch(
    server: TwirpDispatchServer, dispatcher: Dispatcher
) -> None:
    result = await dispatch(dispatcher)

    assert dispatcher.attempts == 1
    assert [d.id for d in server.dispatches(ROOM)] == [result.id]
    assert (result.agent_name, result.room, result.metadata) == (AGENT, ROOM, METADATA)
    assert (server.create_calls, server.list_calls) == (1, 0)


async def test_websocket_url_is_accepted(server: TwirpDispatchServer) -> None:
    ws_url = server.url.replace("http://", "ws://")
    async with Dispatcher.from_credentials(ws_url, server.api_key, server.api_secret) as client:
        await dispatch(client)
    assert len(server.dispatches(ROOM)) == 1


async def test_500_is_retried(server: TwirpDispatchServer, dispatcher: Dispatcher) -> None:
    server.faults.append("500")
    retries = metrics.DISPATCH_RETRIES.labels(AGENT)
    before = retries._value.get()

    await dispatch(dispatcher)

    assert dispatcher.attempts == 2
    assert len(server.dispatches(ROOM)) == 1
    assert retries._value.get() - before == 1  # counted for operators


async def test_500_after_create_returns_the_existing_dispatch(
    server: TwirpDispatchServer, dispatcher: Dispatcher
) -> None:
    server.faults.append("500_after_create")

    result = await dispatch(dispatcher)

    assert [d.id for d in server.dispatches(ROOM)] == [result.id]
    assert server.create_calls == 1
    assert server.list_calls >= 1


async def test_hang_past_the_timeout_returns_the_dispatch_it_created(
    server: TwirpDispatchServer, dispatcher: Dispatcher
) -> None:
    server.faults.append("hang")

    async with asyncio.timeout(3):  # the attempt timeout, not the session's 10 s, ends the hang
        result = await dispatch(dispatcher)

    assert [d.id for d in server.dispatches(ROOM)] == [result.id]
    assert server.create_calls == 1


async def test_reset_is_retried(server: TwirpDispatchServer, dispatcher: Dispatcher) -> None:
    server.faults.append("reset")

    await dispatch(dispatcher)

    assert dispatcher.attempts == 2
    assert len(server.dispatches(ROOM)) == 1


async def test_another_handovers_dispatch_is_not_taken_for_ours(
    server: TwirpDispatchServer, dispatcher: Dispatcher
) -> None:
    earlier = await dispatch(dispatcher, metadata="session:abc|handover:h-0|question:")
    server.faults.append("500")

    result = await dispatch(dispatcher)

    assert result.id != earlier.id
    assert result.metadata == METADATA
    assert len(server.dispatches(ROOM)) == 2


async def test_failing_list_check_does_not_block_the_retry(
    server: TwirpDispatchServer, dispatcher: Dispatcher
) -> None:
    server.faults.append("500")
    server.list_faults.append("hang")

    await dispatch(dispatcher)

    assert dispatcher.attempts == 2
    assert len(server.dispatches(ROOM)) == 1


async def test_401_is_not_retried(server: TwirpDispatchServer, dispatcher: Dispatcher) -> None:
    server.faults.append("401")

    with pytest.raises(DispatchError) as caught:
        await dispatch(dispatcher)

    assert (caught.value.retryable, caught.value.attempts, caught.value.status) == (False, 1, 401)
    assert server.dispatches(ROOM) == []
    assert server.create_calls == 1


async def test_wrong_secret_is_rejected_without_retry(server: TwirpDispatchServer) -> None:
    wrong = "x" * 40
    async with server.dispatcher(policy=FAST, api_secret=wrong) as client:
        with pytest.raises(DispatchError) as caught:
            await dispatch(client)

    assert (caught.value.retryable, caught.value.attempts, caught.value.status) == (False, 1, 401)
    assert server.create_calls == 1
    assert server.dispatches(ROOM) == []


async def test_refused_connection_gives_up_after_max_attempts() -> None:
    async with Dispatcher.from_credentials(closed_port_url(), "devkey", "s" * 40, policy=FAST) as c:
        with pytest.raises(DispatchError) as caught:
            await dispatch(c)

    assert (caught.value.retryable, caught.value.attempts) == (True, FAST.max_attempts)
    assert caught.value.__cause__ is not None


async def test_persistent_500_gives_up_without_creating(
    server: TwirpDispatchServer, dispatcher: Dispatcher
) -> None:
    server.faults.extend(["500"] * FAST.max_attempts)

    with pytest.raises(DispatchError) as caught:
        await dispatch(dispatcher)

    assert (caught.value.retryable, caught.value.attempts) == (True, FAST.max_attempts)
    assert server.create_calls == FAST.max_attempts
    assert server.dispatches(ROOM) == []


async def test_cancel_deletes_the_dispatch(
    server: TwirpDispatchServer, dispatcher: Dispatcher
) -> None:
    created = await dispatch(dispatcher)

    assert await dispatcher.cancel(created) is True

    assert server.dispatches(ROOM) == []
    assert server.delete_calls == 1


async def test_cancel_matching_deletes_a_dispatch_whose_call_was_cut_short(
    server: TwirpDispatchServer, dispatcher: Dispatcher
) -> None:
    server.faults.append("hang")  # created, but the answer never comes
    created = asyncio.Event()
    server.on_create = lambda _: created.set()
    call = asyncio.create_task(dispatch(dispatcher))
    await asyncio.wait_for(created.wait(), 5)  # the server has it; the client has no answer
    call.cancel()
    other = await dispatch(dispatcher, metadata=METADATA.replace("h-1", "h-2"))

    assert await dispatcher.cancel_matching(agent_name=AGENT, room=ROOM, metadata=METADATA)

    assert server.dispatches(ROOM) == [other]
    assert server.delete_calls == 1


async def test_cancel_matching_reports_failure_when_unreachable() -> None:
    async with Dispatcher.from_credentials(closed_port_url(), "devkey", "s" * 40, policy=FAST) as c:
        assert not await c.cancel_matching(agent_name=AGENT, room=ROOM, metadata=METADATA)


async def test_cancel_reports_failure_when_unreachable() -> None:
    async with Dispatcher.from_credentials(closed_port_url(), "devkey", "s" * 40, policy=FAST) as c:
        assert await c.cancel(AgentDispatch(id="AD_1", agent_name=AGENT, room=ROOM)) is False


async def test_aclose_closes_the_owned_session(server: TwirpDispatchServer) -> None:
    client = server.dispatcher(policy=FAST)
    session = client._api._session  # the aiohttp session LiveKitAPI made
    assert session is not None and not session.closed

    await client.aclose()
    await client.aclose()

    assert session.closed
    with pytest.raises(DispatchError):
        await dispatch(client)


async def test_attempt_logs_are_structured_and_omit_the_metadata(
    server: TwirpDispatchServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tutor.dispatch")
    server.faults.extend(["500", "hang"])
    client = Dispatcher.from_credentials(
        server.url, server.api_key, server.api_secret, policy=FAST, log_fields={"session_id": "s1"}
    )
    async with client:
        await dispatch(client)

    records = [r for r in caplog.records if r.name == "tutor.dispatch"]
    attempts = [(r.attempt, r.outcome) for r in records]
    assert attempts == [(1, "transient_error"), (2, "timeout"), (3, "found_existing")]
    for record in records:
        assert (record.target, record.room, record.session_id) == (AGENT, ROOM, "s1")
        assert record.metadata_len == len(METADATA)
        text = f"{record.getMessage()} {record.__dict__!r}"
        assert QUESTION not in text
        assert server.api_secret not in text
    assert records[0].status == 500


async def test_per_call_log_fields_name_the_session_of_each_dispatch(
    server: TwirpDispatchServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tutor.dispatch")
    async with server.dispatcher(policy=FAST) as client:
        await client.dispatch(
            agent_name=AGENT,
            room=ROOM,
            metadata=METADATA,
            log_fields={"session_id": "s-9", "student": "kid"},
        )

    [record] = [r for r in caplog.records if r.name == "tutor.dispatch"]
    assert (record.session_id, record.student, record.outcome) == ("s-9", "kid", "created")


async def test_an_earlier_dispatch_with_a_job_held_serves_the_room_a_later_one_does_not(
    server: TwirpDispatchServer, dispatcher: Dispatcher
) -> None:
    from livekit.protocol.agent import JobStatus

    agent = "learning-orchestrator"
    first = await dispatcher.dispatch(agent_name=agent, room=ROOM, metadata="session:s")
    second = await dispatcher.dispatch(agent_name=agent, room=ROOM, metadata="session:s")
    await dispatcher.dispatch(agent_name="learning-english", room=ROOM, metadata="x")

    async def served(dispatch: AgentDispatch) -> bool:
        return await dispatcher.served_by_earlier(
            room=ROOM, dispatch_id=dispatch.id, agent_name=agent
        )

    # no worker holds the first dispatch's job yet: nobody is on the way
    assert not await served(second)
    [stored_first, _, stored_other] = server.dispatches(ROOM)
    stored_other.state.jobs.add().state.status = JobStatus.JS_RUNNING  # another worker's
    assert not await served(second)
    job = stored_first.state.jobs.add()
    job.state.status = JobStatus.JS_PENDING
    assert await served(second)  # the later dispatch's job must leave
    assert not await served(first)  # the earlier one stays
    job.state.status = JobStatus.JS_FAILED
    assert not await served(second)  # a failed earlier job serves nobody
    # the server cannot be asked: better two tutors than none
    server.list_faults = ["401"]
    job.state.status = JobStatus.JS_RUNNING
    assert not await served(second)
