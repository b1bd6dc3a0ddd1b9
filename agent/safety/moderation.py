"""One moderation check: the `openai` client's moderations endpoint, a timeout, and a tier.

Tiers: *urgent* when a category an operator marked urgent (self-harm, sexual content
involving minors, threats) scores at least the urgent threshold; *concern* when the endpoint
flags the text or any category scores at least the concern threshold; else clean. A failed
or timed-out check is its own verdict (`failed`, and `transient` when it ran out of
time, which a second try on a less busy moment may not); what happens then is the
guard's and the fail mode's decision, not this module's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import openai

from agent.telemetry import metrics

logger = logging.getLogger("tutor.safety")

Tier = Literal["concern", "urgent"]
Direction = Literal["student", "tutor"]

DEFAULT_URGENT_CATEGORIES = (
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual/minors",
    "harassment/threatening",
    "hate/threatening",
    "violence",
)


@dataclass(frozen=True)
class Policy:
    concern_threshold: float = 0.5
    urgent_threshold: float = 0.5
    urgent_categories: Sequence[str] = DEFAULT_URGENT_CATEGORIES

    def tier(self, flagged: bool, scores: dict[str, float]) -> Tier | None:
        if any(scores.get(c, 0.0) >= self.urgent_threshold for c in self.urgent_categories):
            return "urgent"
        if flagged or any(score >= self.concern_threshold for score in scores.values()):
            return "concern"
        return None


@dataclass(frozen=True)
class Verdict:
    tier: Tier | None = None
    categories: list[str] = field(default_factory=list)  # the categories over the threshold
    scores: dict[str, float] = field(default_factory=dict)
    failed: bool = False  # the check itself failed or timed out
    transient: bool = False  # it timed out: a second try may succeed
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return self.tier is None and not self.failed


class Moderator:
    """Checks text with the moderation endpoint (`model`) within `timeout` seconds."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        model: str = "omni-moderation-latest",
        timeout: float = 2.0,
        policy: Policy = Policy(),
    ) -> None:
        self.client = client
        self.model = model
        self.timeout = timeout
        self.policy = policy

    async def aclose(self) -> None:
        await self.client.close()

    async def check(self, text: str, *, direction: Direction, retry: bool = False) -> Verdict:
        """One check of `text`; `retry`: the second try after a transient failure (its
        outcome is counted in `tutor_moderation_retries_total`)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.client.moderations.create(model=self.model, input=text)
            result = response.results[0]
            scores = {
                name: float(score)
                for name, score in result.category_scores.model_dump(by_alias=True).items()
                if score is not None
            }
            tier = self.policy.tier(bool(result.flagged), scores)
            over = sorted(name for name, score in scores.items() if score >= min(
                self.policy.concern_threshold, self.policy.urgent_threshold
            ))  # fmt: skip
            verdict = Verdict(tier, over, scores, seconds=time.monotonic() - started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning(
                "moderation check failed: %s", type(exc).__name__, extra={"direction": direction}
            )
            verdict = Verdict(
                failed=True, transient=is_transient(exc), seconds=time.monotonic() - started
            )
        outcome = "failed" if verdict.failed else (verdict.tier or "clean")
        metrics.MODERATION_VERDICTS.labels(direction, outcome).inc()
        if retry:
            metrics.MODERATION_RETRIES.labels(direction, outcome).inc()
        metrics.MODERATION_LATENCY.labels(direction).observe(verdict.seconds)
        return verdict


def is_transient(exc: BaseException) -> bool:
    """A check that ran out of time (ours or the client's): on a busy moment a second try
    may not; an endpoint that refuses or is down fails the same way again at once."""
    return isinstance(exc, TimeoutError | openai.APITimeoutError)
