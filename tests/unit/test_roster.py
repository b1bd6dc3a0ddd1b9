"""The roster file: the shipped one is today's tutors, a bad one is refused with one line
per problem, the old per-tutor settings override it, and any roster worker starts by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config.roster import (
    SHIPPED_ROSTER,
    RosterError,
    default_roster,
    load_roster,
    parse_roster,
    roster_for,
)
from agent.config.settings import load_settings
from harness import REPO
from harness.rosters import readme_example, write_roster

SHIPPED = SHIPPED_ROSTER.read_text(encoding="utf-8")


def problems_of(text: str) -> list[str]:
    with pytest.raises(RosterError) as refused:
        parse_roster(text)
    return refused.value.problems


def test_the_shipped_roster_is_the_four_tutors_on_their_two_workers() -> None:
    roster = load_roster(SHIPPED_ROSTER)

    assert list(roster.tutors) == ["orchestrator", "math", "history", "english"]
    assert roster.hosted_on("learning-orchestrator") == ["orchestrator", "math", "history"]
    assert roster.hosted_on("learning-english") == ["english"]
    assert roster.mode_of("learning-english") == "realtime"
    assert roster.routes_of("orchestrator") == ["math", "history", "english"]
    assert roster.routes_of("math") == ["history", "english"]
    assert roster.routes_of("english") == []
    assert roster.elsewhere("learning-orchestrator") == {"english": "learning-english"}
    voices = [spec.voice for spec in roster.tutors.values()]
    assert voices == ["coral", "sage", "ash", "shimmer"]
    assert roster.pipeline_model("english") == "gpt-4.1-mini"


@pytest.mark.parametrize(
    ("edit", "line"),
    [
        (
            lambda t: t.replace('routes_to = ["history", "english"]', 'routes_to = ["englsh"]'),
            "tutors.math: routes_to 'englsh', which is not a tutor",
        ),
        (
            lambda t: t + '\n[tutors.math]\ntitle = "Maths again"\n',
            "duplicate kind: [tutors.math] is defined twice",
        ),
        (
            lambda t: t + '\n[workers.learning-science]\nmode = "pipeline"\n',
            "workers.learning-science: hosts no tutor",
        ),
        (
            lambda t: t.replace('title = "History tutor"\n', ""),
            "tutors.history: missing title",
        ),
        (
            lambda t: t.replace(
                'worker = "learning-orchestrator"\n\n[tutors.history]',
                'worker = "learning-orchestra"\n\n[tutors.history]',
            ),
            "tutors.math: worker 'learning-orchestra' is not a [workers.learning-orchestra]",
        ),
        (
            lambda t: t.replace("[tutors.orchestrator]", "[tutors.main]"),
            "no [tutors.orchestrator]: the main tutor every student starts with",
        ),
        (
            lambda t: t.replace('voice = "sage"', 'voice = "sage"\nvoise = "onyx"'),
            "tutors.math: unknown field 'voise'",
        ),
        (
            lambda t: t.replace('mode = "realtime"', 'mode = "speech"'),
            "workers.learning-english: mode must be 'pipeline' or 'realtime', not 'speech'",
        ),
    ],
    ids=[
        "unknown-route",
        "duplicate-kind",
        "idle-worker",
        "missing-title",
        "unknown-worker",
        "no-orchestrator",
        "unknown-field",
        "bad-mode",
    ],
)
def test_a_bad_roster_is_refused_with_the_line_naming_the_problem(edit, line: str) -> None:
    problems = problems_of(edit(SHIPPED))

    assert len(problems) == 1, problems
    assert problems[0].endswith(line)


def test_every_problem_of_a_roster_is_reported_on_its_own_line() -> None:
    text = (
        SHIPPED.replace('routes_to = ["history", "english"]', 'routes_to = ["englsh", "math"]')
        .replace('title = "History tutor"\n', "")
        .replace('handoff_line = "Let me connect you with our English tutor!"', 'handoff_line = ""')
        + '\n[workers.learning-science]\nmode = "pipeline"\n'
    )
    with pytest.raises(RosterError) as refused:
        parse_roster(text, source="school.toml")

    assert refused.value.problems == [
        "tutors.history: missing title",
        "tutors.english: handoff_line is empty",
        "tutors.math: routes_to 'englsh', which is not a tutor",
        "tutors.math: routes_to names itself",
        "workers.learning-science: hosts no tutor",
    ]
    assert str(refused.value).splitlines() == [
        f"school.toml: {problem}" for problem in refused.value.problems
    ]


def test_a_realtime_worker_hosts_one_tutor_and_never_the_orchestrator() -> None:
    text = SHIPPED.replace('worker = "learning-orchestrator"', 'worker = "learning-english"')

    assert problems_of(text) == [
        "workers.learning-orchestrator: hosts no tutor",
        "workers.learning-english: a realtime worker hosts one tutor, not "
        "orchestrator, math, history, english",
        "tutors.orchestrator: must be on a pipeline worker, not the realtime 'learning-english'",
    ]


def test_a_worker_refuses_to_start_on_a_bad_roster_naming_each_problem(tmp_path: Path) -> None:
    bad = write_roster(
        tmp_path,
        '[workers.learning-science]\nmode = "pipeline"\n',
        text=SHIPPED.replace('title = "History tutor"\n', ""),
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TUTOR_ROSTER": str(bad)}
    proc = subprocess.run(
        [sys.executable, "-c", "import agent.workers.named"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[1:] == [
        f"{bad}: tutors.history: missing title",
        f"{bad}: workers.learning-science: hosts no tutor",
    ]


def test_per_tutor_settings_override_the_roster_only_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    shipped = roster_for(load_settings())
    assert shipped.tutor("math").voice == "sage"
    assert shipped.tutor("english").model == "gpt-realtime"

    roster = roster_for(
        load_settings(
            math_voice="onyx",
            history_llm_model="gpt-4.1",
            english_llm_model="gpt-4.1-nano",
            realtime_model="gpt-realtime-mini",
            english_agent_name="school-english",
            orchestrator_voice="",  # empty in .env: the roster's
        )
    )
    assert roster.tutor("math").voice == "onyx"
    assert roster.tutor("history").model == "gpt-4.1"
    assert roster.pipeline_model("english") == "gpt-4.1-nano"
    assert roster.tutor("english").model == "gpt-realtime-mini"
    assert roster.tutor("orchestrator").voice == "coral"
    assert roster.elsewhere("learning-orchestrator") == {"english": "school-english"}
    assert roster.mode_of("school-english") == "realtime"


def test_the_default_roster_is_the_one_tutor_roster_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_roster(tmp_path, readme_example("[tutors.science]"))
    monkeypatch.setenv("TUTOR_ROSTER", str(path))
    default_roster.cache_clear()
    try:
        assert "science" in default_roster().tutors
    finally:
        default_roster.cache_clear()


def test_any_roster_worker_starts_by_name(tmp_path: Path) -> None:
    roster = write_roster(tmp_path, readme_example("[workers.learning-french]"))
    report = (
        "import agent.workers.named as w; "
        "print(w.server._agent_name, w.plan.pipeline, w.plan.default_tutor, "
        "w.server._entrypoint_fnc is w.entrypoint)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TUTOR_ROSTER": str(roster)}
    started = {}
    for name in ("learning-french", ""):
        proc = subprocess.run(
            [sys.executable, "-c", report],
            cwd=tmp_path,
            env={**env, "WORKER_NAME": name},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        started[name] = proc.stdout.split()

    assert started["learning-french"] == ["learning-french", "False", "french", "True"]
    assert started[""] == ["learning-orchestrator", "True", "orchestrator", "True"]


def test_an_unknown_worker_name_stops_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WORKER_NAME": "learning-frnch"}
    proc = subprocess.run(
        [sys.executable, "-c", "import agent.workers.named"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("learning-frnch: not a worker of the tutor roster")


def test_a_worker_renamed_in_the_roster_keeps_that_name_unless_the_setting_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    path = write_roster(tmp_path, text=SHIPPED.replace("learning-english", "school-english"))

    unset = roster_for(load_settings(tutor_roster=str(path)))
    assert unset.tutor("english").worker == "school-english"
    copied = roster_for(
        load_settings(tutor_roster=str(path), english_agent_name="learning-english")
    )
    assert copied.tutor("english").worker == "school-english"  # .env.example's value
    named = roster_for(load_settings(tutor_roster=str(path), english_agent_name="ops-english"))
    assert named.tutor("english").worker == "ops-english"
