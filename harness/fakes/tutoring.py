"""Start the real tutors in a real text-mode `AgentSession`, each on its own scripted LLM."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from livekit.agents import AgentSession, tts
from livekit.agents.types import NOT_GIVEN
from livekit.agents.voice import io
from livekit.agents.voice.run_result import RunResult

from agent.config.roster import Roster, default_roster
from agent.conversation.routing import build_tutor
from agent.conversation.session import create_session
from agent.conversation.state import SessionUserdata, TutorKind, TutorModels
from agent.safety.guard import SafetyGuard
from harness.fakes.llm import Reply, RequestLog, ScriptedLLM, say

GREETING = "Hi! I can help with maths, history and English. What would you like to learn?"


@dataclass
class Tutoring:
    session: AgentSession[SessionUserdata]
    llms: dict[TutorKind, ScriptedLLM]
    log: RequestLog
    opening: RunResult

    @property
    def userdata(self) -> SessionUserdata:
        return self.session.userdata

    async def turn(self, text: str) -> RunResult:
        return await self.session.run(user_input=text)


KINDS: tuple[TutorKind, ...] = tuple(default_roster().tutors)  # the shipped roster's


@asynccontextmanager
async def tutoring(
    scripts: Mapping[TutorKind, Sequence[Reply]],
    *,
    first: TutorKind = "orchestrator",
    opening: Reply | None = None,
    voices: Mapping[TutorKind, tts.TTS] | None = None,
    audio_output: io.AudioOutput | None = None,
    safety: SafetyGuard | None = None,
    roster: Roster | None = None,
) -> AsyncIterator[Tutoring]:
    """A started session whose `first` tutor has spoken its opening (`opening` script reply),
    with every tutor of `roster` (default: the shipped one) on a scripted LLM in-session.

    Text only, unless `voices` (a TTS per tutor) and an `audio_output` are given.
    """
    roster = roster or default_roster()
    log = RequestLog()
    llms: dict[TutorKind, ScriptedLLM] = {}
    for kind in roster.tutors:
        script = list(scripts.get(kind, ()))
        if kind == first:
            script.insert(0, opening or say(GREETING))
        llms[kind] = ScriptedLLM(script, name=kind, log=log)
    userdata = SessionUserdata(
        student_identity="student-1",
        room_name="room-1",
        roster=roster,
        tutor_models={
            kind: TutorModels(llm=fake, tts=voices[kind] if voices else NOT_GIVEN)
            for kind, fake in llms.items()
        },
    )
    userdata.safety = safety
    session = create_session(userdata)
    if safety is not None:
        safety.attach(session)
    if audio_output is not None:
        session.output.audio = audio_output
    async with session:
        opening_run = await session.start(build_tutor(first, userdata), capture_run=True)
        yield Tutoring(session=session, llms=llms, log=log, opening=opening_run)
