"""The teachers' JSON API: the same data as their pages, for a school's own tools."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from agent.web import teacher_data
from agent.web.classes import classes_of
from agent.web.context import SignedIn, Web

router = APIRouter(prefix="/api/teacher")


def fields_of(view: object, *names: str | tuple[str, str]) -> dict[str, Any]:
    """`view`'s attributes as a JSON object, each under its name (or `(key, attribute)`)."""
    found: dict[str, Any] = {}
    for name in names:
        key, attribute = name if isinstance(name, tuple) else (name, name)
        found[key] = getattr(view, attribute)
    return found


@router.get("/me")
async def api_me(teacher: SignedIn) -> dict[str, Any]:
    return fields_of(teacher, "username", ("name", "display_name"), "role")


@router.get("/classes")
async def api_classes(teacher: SignedIn, web: Web) -> list[dict[str, Any]]:
    return [
        fields_of(c, "code", "name", ("open", "is_open"), "created_at", "closed_at")
        for c in await classes_of(web.store, teacher.id)
    ]


@router.get("/sessions")
async def api_sessions(teacher: SignedIn, web: Web) -> list[dict[str, Any]]:
    return [
        fields_of(
            s,
            ("id", "session_id"),
            *("student", "class_code", "started_at", "ended_at", "length_s", "tutor_joined"),
            *("gave_up", "subjects", "flags", "urgent_flags"),
        )
        for s in await teacher_data.sessions_for(web.store, teacher)
    ]


@router.get("/sessions/{session_id}")
async def api_session(session_id: str, teacher: SignedIn, web: Web) -> Response:
    found = await teacher_data.transcript(web.store, teacher, session_id)
    if found is None:
        return JSONResponse({"error": "no session of your classes has that id"}, 404)
    return JSONResponse(found)


@router.get("/flags")
async def api_flags(teacher: SignedIn, web: Web) -> list[dict[str, Any]]:
    return [vars(flag) for flag in await teacher_data.flags_for(web.store, teacher)]


@router.get("/alerts")
async def api_alerts(teacher: SignedIn, web: Web) -> list[dict[str, Any]]:
    return await teacher_data.alerts_for(web.store, teacher)
