"""The soak benchmark's logic at 100 conversations: faults injected, every invariant kept.

One run (module-scoped) is shared by the tests below; see `bench/soak.py` for what runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from harness.soak import INVARIANTS, SoakConfig, SoakResult, run_soak

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONVERSATIONS = 100
# twice the benchmark's timeouts and delays: the same races, more room for a busy machine
SLOWER = 2.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def soak() -> AsyncIterator[SoakResult]:
    yield await run_soak(SoakConfig(conversations=CONVERSATIONS, seed=1).slowed(SLOWER))


async def test_every_conversation_ran_with_its_turns(soak: SoakResult) -> None:
    assert soak.conversations == CONVERSATIONS
    assert 2 * CONVERSATIONS <= soak.turns <= 6 * CONVERSATIONS
    assert soak.in_session_handoffs > 0


@pytest.mark.parametrize("invariant", INVARIANTS)
async def test_invariant_holds(soak: SoakResult, invariant: str) -> None:
    found = [e for e in soak.examples if f": {invariant}: " in e]
    assert soak.violations[invariant] == 0, found


@pytest.mark.parametrize("fault", ["500", "hang", "reset", "unready"])
async def test_fault_was_injected(soak: SoakResult, fault: str) -> None:
    assert soak.faults[fault] > 0


async def test_crossings_both_completed_and_fell_back(soak: SoakResult) -> None:
    assert soak.crossings_completed > 0
    assert soak.crossings_fell_back > 0
    # each fallback that had a dispatch cancelled it through DeleteDispatch
    assert 0 < soak.delete_calls <= soak.crossings_fell_back


async def test_retries_happened_and_found_what_an_earlier_attempt_made(soak: SoakResult) -> None:
    assert sum(v for k, v in soak.attempts.items() if k.endswith(":retry")) > 0
    assert soak.attempts["found_existing:retry"] > 0


async def test_nothing_is_left_running(soak: SoakResult) -> None:
    assert soak.leftover_tasks == 0
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []
