"""Safety for children: every turn moderated through a wire-compatible moderation endpoint,
fixed kind lines on a flag, and alerts that reach a webhook receiver signed and exactly once
by id."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import openai
import pytest

from agent.dispatch.metadata import dispatch_metadata
from agent.records import RecordsStore
from agent.records.store import utc_now
from agent.safety.alerts import DeliveryConfig, deliver_due
from agent.safety.guard import SafetyGuard
from agent.safety.lines import ONE_MOMENT_LINE, REDIRECT_LINE, SORRY_LINE, line_for
from agent.safety.moderation import Moderator
from agent.telemetry import metrics
from harness.databases import RecordsDatabase
from harness.fakes.audio import MARK_BASE, PacedTTS, PlaybackLog, RealtimeAudioOutput
from harness.fakes.cluster import ENGLISH_WORKER, ORCHESTRATOR_WORKER, Cluster, Job
from harness.fakes.llm import Reply, call, say
from harness.fakes.openai_server import API_KEY, FakeOpenAI
from harness.fakes.room import RoomHub
from harness.fakes.tutoring import tutoring
from harness.fakes.webhook import WebhookReceiver
from harness.rosters import ANNOUNCEMENTS

WAIT = 10.0
SECRET = "test-alert-secret-of-at-least-32-characters"
HELPLINE = "You can also call the school helpline on 0800 000 000."
RUDE = "You are stupid and I hate you"
DISCLOSURE = "Someone at home hurts me and I want to hurt myself"
UNSAFE_SENTENCE = "Here is how to make something dangerous at home."


def moderate(text: str) -> dict[str, float]:
    """The fake moderation model: a few trigger words and the categories they score."""
    lowered = text.lower()
    scores: dict[str, float] = {}
    if "stupid" in lowered:
        scores["harassment"] = 0.82
    if "hurt myself" in lowered:
        scores["self-harm/intent"] = 0.93
        scores["self-harm"] = 0.9
    if "dangerous" in lowered:
        scores["illicit"] = 0.71
    return scores


def moderator_for(server: FakeOpenAI, timeout: float = 2.0) -> Moderator:
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=server.url, max_retries=0)
    return Moderator(client, timeout=timeout)


@dataclass
class School:
    cluster: Cluster
    job: Job
    store: RecordsStore
    moderation: FakeOpenAI

    async def export(self) -> dict[str, Any]:
        await self.cluster.close()
        doc = await self.store.export("s-1")
        assert doc is not None
        return doc


@asynccontextmanager
async def school(
    database: RecordsDatabase,
    scripts: Mapping[str, Sequence[Reply]],
    **options: Any,
) -> AsyncIterator[School]:
    """A cluster that records and moderates, with the student's orchestrator job greeted."""
    store = database.store()
    async with FakeOpenAI(moderate=moderate) as moderation:
        scripts = {**scripts, "orchestrator": [say("Hi!"), *scripts.get("orchestrator", ())]}
        cluster = Cluster(
            RoomHub(), scripts, records=store, moderator=moderator_for(moderation), **options
        )
        cluster.settings = cluster.settings.model_copy(
            update={"safeguarding_helpline_text": HELPLINE}
        )
        job = await cluster.start_job(
            ORCHESTRATOR_WORKER, dispatch_metadata(session="s-1", student="kid-1")
        )
        await cluster.said(job, "Hi!")
        try:
            yield School(cluster, job, store, moderation)
        finally:
            await cluster.close()
            await store.aclose()
            assert cluster.moderator is not None
            await cluster.moderator.aclose()
            moderation.check()


async def deliver(store: RecordsStore, **webhooks: str) -> dict[str, int]:
    config = DeliveryConfig(webhooks=webhooks, secret=SECRET)
    async with aiohttp.ClientSession() as http:
        return await deliver_due(store, config, http=http)


async def test_a_clean_turn_is_answered_with_no_extra_model_request(
    database: RecordsDatabase,
) -> None:
    scripts = {
        "orchestrator": [call("route_to_math", question_summary="What is 7 times 8?")],
        "math": [say("Seven times eight is fifty-six. Well done for asking!")],
    }
    async with school(database, scripts) as s:
        await s.job.session.run(user_input="What is 7 times 8?")
        await s.cluster.said(s.job, "Seven times eight is fifty-six. Well done for asking!")
        checked = [body["input"] for body in s.moderation.bodies("/v1/moderations")]
        doc = await s.export()
    assert s.cluster.log.names() == ["orchestrator", "orchestrator", "math"]
    # the student's turn and every generated sentence were checked; fixed lines never are
    assert "What is 7 times 8?" in checked
    assert "Seven times eight is fifty-six." in checked and "Well done for asking!" in checked
    assert ANNOUNCEMENTS["math"] not in checked
    assert doc["flags"] == [] and doc["alerts"] == []


async def test_a_concern_gets_the_redirect_line_and_the_teacher_an_alert(
    database: RecordsDatabase,
) -> None:
    scripts = {"orchestrator": [say("That is a model answer."), say("Fractions are fun.")]}
    async with WebhookReceiver(SECRET) as teacher, school(database, scripts) as s:
        await s.job.session.run(user_input=RUDE)
        await s.cluster.said(s.job, REDIRECT_LINE)
        await s.job.session.run(user_input="Can we do fractions?")
        await s.cluster.said(s.job, "Fractions are fun.")
        doc = await s.export()
        counts = await deliver(s.store, teacher=teacher.url, safeguarding="")
    assert s.job.said == ["Hi!", REDIRECT_LINE, "Fractions are fun."]
    # the flagged turn never reaches the model again
    later = s.cluster.llms["orchestrator"].requests[-1]
    assert RUDE not in later.all_text()
    [flag] = doc["flags"]
    assert (flag["tier"], flag["speaker"], flag["action"]) == ("concern", "student", "redirected")
    assert flag["categories"] == ["harassment"] and flag["text"] == RUDE
    assert [a["channel"] for a in doc["alerts"]] == ["teacher"]
    assert counts == {"delivered": 1}
    [alert] = teacher.received
    assert alert.signed and alert.accepted and alert.alert_id == doc["alerts"][0]["id"]
    assert alert.payload["session_id"] == "s-1" and alert.payload["student"] == "kid-1"
    assert alert.payload["flagged_text"] == RUDE and alert.payload["tier"] == "concern"
    assert {"speaker": "student", "text": RUDE} in alert.payload["recent_turns"]


async def test_an_urgent_disclosure_gets_the_safeguarding_response_and_both_alerts(
    database: RecordsDatabase,
) -> None:
    scripts = {"orchestrator": [call("route_to_math", question_summary=DISCLOSURE)]}
    async with (
        WebhookReceiver(SECRET) as teacher,
        WebhookReceiver(SECRET) as lead,
        school(database, scripts) as s,
    ):
        await s.job.session.run(user_input=DISCLOSURE)
        await s.cluster.said(s.job, line_for("urgent", HELPLINE))
        doc = await s.export()
        counts = await deliver(s.store, teacher=teacher.url, safeguarding=lead.url)
    # the fixed response, not the model's (which would have routed to Math)
    assert s.job.said[-1] == line_for("urgent", HELPLINE)
    assert "You are not in trouble" in s.job.said[-1] and HELPLINE in s.job.said[-1]
    assert s.job.session.userdata.handoff_count == 0
    [flag] = doc["flags"]
    assert (flag["tier"], flag["action"]) == ("urgent", "safeguarding_response")
    assert "self-harm/intent" in flag["categories"]
    assert sorted(a["channel"] for a in doc["alerts"]) == ["safeguarding", "teacher"]
    assert counts == {"delivered": 2}
    assert [r.payload["tier"] for r in teacher.received + lead.received] == ["urgent", "urgent"]
    assert all(r.signed for r in teacher.received + lead.received)


async def test_a_flagged_tutor_sentence_is_never_heard_and_the_rest_is_dropped() -> None:
    answer = f"Good question about chemistry. {UNSAFE_SENTENCE} And then you mix it all."
    voices = {kind: PacedTTS(ttfb=0.01, speedup=20.0, marked=True, name=kind) for kind in (
        "orchestrator", "math", "history", "english")}  # fmt: skip
    output = RealtimeAudioOutput(PlaybackLog())
    async with FakeOpenAI(moderate=moderate) as moderation:
        guard = SafetyGuard(moderator_for(moderation))
        async with tutoring(
            {"orchestrator": [say(answer)]}, voices=voices, audio_output=output, safety=guard
        ) as t:
            await t.turn("Tell me some chemistry")
            await output.log.played(2, timeout=WAIT)  # the greeting, then the reply
        await guard.moderator.aclose()
        moderation.check()
    voice = voices["orchestrator"]
    heard = {voice.spoken[mark - MARK_BASE] for mark in output.marks if mark >= MARK_BASE}
    assert "Good question about chemistry." in heard
    assert REDIRECT_LINE.split(". ")[0] + "." in heard  # the TTS speaks it sentence by sentence
    assert UNSAFE_SENTENCE not in heard  # synthesised ahead, perhaps, but never played
    assert not any("mix it all" in text for text in voice.spoken)  # the rest never even made
    said = [m.text_content for m in t.session.history.items if m.type == "message"]
    assert UNSAFE_SENTENCE not in " ".join(s or "" for s in said)


async def test_moderation_down_fails_closed_and_open_only_when_the_operator_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FakeOpenAI(moderate=moderate) as moderation:
        moderation.down = True
        closed = SafetyGuard(moderator_for(moderation))
        async with tutoring({"orchestrator": [say("A generated answer.")]}, safety=closed) as t:
            result = await t.turn("What is a fraction?")
        await closed.moderator.aclose()  # an open client would be closed by GC in a later loop
        assert [e.item.text_content for e in result.events if e.type == "message"] == [SORRY_LINE]
        opened = SafetyGuard(moderator_for(moderation), fail_open=True)
        with caplog.at_level(logging.WARNING, logger="tutor.safety"):
            async with tutoring({"orchestrator": [say("A generated answer.")]}, safety=opened) as t:
                result = await t.turn("What is a fraction?")
        await opened.moderator.aclose()
    assert [e.item.text_content for e in result.events if e.type == "message"] == [
        "A generated answer."
    ]
    assert any("MODERATION_FAIL_MODE=open" in r.getMessage() for r in caplog.records)


def retries(verdict: str) -> float:
    return metrics.MODERATION_RETRIES.labels("student", verdict)._value.get()


async def test_a_check_that_times_out_is_tried_again_while_the_child_hears_one_moment() -> None:
    async with FakeOpenAI(moderate=moderate) as moderation:
        guard = SafetyGuard(moderator_for(moderation, timeout=0.3))
        cleared = retries("clean")
        async with tutoring(
            {"orchestrator": [say("A fraction is part of a whole.")]}, safety=guard
        ) as t:
            moderation.moderation_delays.append(2.0)  # the student's check: past the timeout
            result = await t.turn("What is a fraction?")
        await guard.moderator.aclose()
        checked = [body["input"] for body in moderation.bodies("/v1/moderations")]
    said = [e.item.text_content for e in result.events if e.type == "message"]
    assert said == [f"{ONE_MOMENT_LINE} A fraction is part of a whole."]
    assert checked.count("What is a fraction?") == 2  # once more, not over and over
    assert retries("clean") == cleared + 1


async def test_a_check_that_times_out_twice_fails_closed_after_one_moment() -> None:
    async with FakeOpenAI(moderate=moderate) as moderation:
        guard = SafetyGuard(moderator_for(moderation, timeout=0.3))
        failed = retries("failed")
        async with tutoring({"orchestrator": [say("A generated answer.")]}, safety=guard) as t:
            moderation.moderation_delays.extend([2.0, 2.0])
            result = await t.turn("What is a fraction?")
        await guard.moderator.aclose()
    said = [e.item.text_content for e in result.events if e.type == "message"]
    assert said == [f"{ONE_MOMENT_LINE} {SORRY_LINE}"]
    assert retries("failed") == failed + 1


async def test_a_tutor_sentence_whose_check_times_out_is_spoken_once_cleared() -> None:
    async with FakeOpenAI(moderate=moderate) as moderation:
        guard = SafetyGuard(moderator_for(moderation, timeout=0.3))
        async with tutoring(
            {"orchestrator": [say("Halves are fractions too.")]}, safety=guard
        ) as t:
            moderation.moderation_delays.extend([0.0, 2.0])  # the student's, then the sentence's
            result = await t.turn("What is a fraction?")
        await guard.moderator.aclose()
        checked = [body["input"] for body in moderation.bodies("/v1/moderations")]
    said = [e.item.text_content for e in result.events if e.type == "message"]
    assert said == [f"{ONE_MOMENT_LINE} Halves are fractions too."]
    assert checked.count("Halves are fractions too.") == 2


async def test_a_receiver_that_refuses_for_a_while_gets_the_alert_exactly_once_by_id(
    database: RecordsDatabase,
) -> None:
    scripts = {"orchestrator": [say("unused")]}
    async with WebhookReceiver(SECRET, refuse=2) as teacher, school(database, scripts) as s:
        await s.job.session.run(user_input=RUDE)
        await s.cluster.said(s.job, REDIRECT_LINE)
        await s.export()  # the job has ended: the outbox alone holds the alert now
        outcomes = [await deliver(s.store, teacher=teacher.url)]
        for minutes in (1, 3, 10):  # later passes, after the backoff
            config = DeliveryConfig(webhooks={"teacher": teacher.url}, secret=SECRET)
            async with aiohttp.ClientSession() as http:
                later = utc_now() + timedelta(minutes=minutes)
                outcomes.append(await deliver_due(s.store, config, http=http, now=later))
        doc = await s.store.export("s-1")
    assert outcomes == [{"retry": 1}, {"retry": 1}, {"delivered": 1}, {}]
    ids = {r.alert_id for r in teacher.received}
    assert len(ids) == 1 and len(teacher.received) == 3  # the same id on every attempt
    assert len(teacher.accepted()) == 1
    assert doc is not None and doc["alerts"][0]["status"] == "delivered"
    assert doc["alerts"][0]["attempts"] == 3


async def test_an_urgent_disclosure_after_an_english_crossing_is_one_flag_of_the_session(
    database: RecordsDatabase,
) -> None:
    scripts = {
        "orchestrator": [call("route_to_english", question_summary="What is a noun?")],
        "english_rt": [say("A noun names a thing."), say("(a model reply)")],
    }
    async with school(database, scripts) as s:
        await s.job.session.run(user_input="What is a noun?")
        english = await s.cluster.job(ENGLISH_WORKER, 1)
        await s.cluster.said(english, "A noun names a thing.")
        await english.session.run(user_input=DISCLOSURE)
        await s.cluster.said(english, line_for("urgent", HELPLINE))
        doc = await s.export()
    [flag] = doc["flags"]
    assert (flag["tier"], flag["speaker"]) == ("urgent", "student")
    assert sorted(a["channel"] for a in doc["alerts"]) == ["safeguarding", "teacher"]
    assert {a["id"] for a in doc["alerts"]} and doc["session"]["id"] == "s-1"
    assert "(a model reply)" not in english.said


def english_realtime_script(call_: Any) -> Reply:
    question = call_.last_user()
    if "chemistry" in question:
        return say(f"Good question, let me think. {UNSAFE_SENTENCE} Then you mix it.")
    if "stupid" in question:
        return say("(a model reply to a rude turn)")
    return say("A noun names a person, place or thing.")


async def test_the_realtime_english_tutor_has_its_input_and_output_checked(
    database: RecordsDatabase,
) -> None:
    """On the real RealtimeModel over the fake websocket: a flagged student turn cancels the
    model's response; a flagged sentence of the model is cut; both leave its context."""
    from harness.fakes.production import chat_script, production_models, settings_for

    store = database.store()
    async with FakeOpenAI(
        chat=chat_script, realtime=english_realtime_script, moderate=moderate, llm_ttft=0.3
    ) as fake:
        settings = settings_for(fake)
        cluster = Cluster(
            RoomHub(),
            {},
            settings=settings,
            models=production_models(settings),
            records=store,
            moderator=moderator_for(fake),
        )
        try:
            first = await cluster.start_job(
                ORCHESTRATOR_WORKER, dispatch_metadata(session="s-1", student="kid-1")
            )
            await first.session.run(user_input="Can you help me with English? What is a noun?")
            english = await cluster.job(ENGLISH_WORKER, 1)
            await cluster.said(english, "A noun names a person, place or thing.")

            await english.session.run(user_input=RUDE)
            await cluster.said(english, REDIRECT_LINE)
            await english.session.run(user_input="Tell me some chemistry")
            await cluster.until(lambda: english.said.count(REDIRECT_LINE) == 2, timeout=WAIT)
        finally:
            await cluster.close()
            assert cluster.moderator is not None
            await cluster.moderator.aclose()
        deleted = {event["item_id"] for event in fake.events("conversation.item.delete")}
        created = {
            event["item"]["id"]: event["item"] for event in fake.events("conversation.item.create")
        }
        fake.check()
    doc = await store.export("s-1")
    await store.aclose()
    said = " ".join(english.said)
    assert "(a model reply" not in said and UNSAFE_SENTENCE not in said
    assert "Then you mix it" not in said
    assert doc is not None
    flags = [(f["speaker"], f["tier"]) for f in doc["flags"]]
    assert flags == [("student", "concern"), ("english", "concern")]
    # the flagged student turn was taken out of the realtime model's context
    rude_items = [i for i, item in created.items() if RUDE in str(item)]
    assert rude_items and set(rude_items) <= deleted
