"""Rosters for tests: the shipped `tutors.toml` plus the README's examples, written to a
directory the way a school would copy and edit the file; the shipped roster's handoff lines
and routing tools by name."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from livekit.agents import llm

from agent.config.roster import SHIPPED_ROSTER, Roster, default_roster, load_roster
from agent.conversation.routing import route_tool, route_tool_name
from harness import REPO

README = REPO / "README.md"


class _HandoffLines(Mapping[str, str]):
    """The default roster's handoff lines by tutor kind (read when first used)."""

    def __getitem__(self, kind: str) -> str:
        return default_roster().tutor(kind).handoff_line

    def __iter__(self) -> Iterator[str]:
        return iter(default_roster().tutors)

    def __len__(self) -> int:
        return len(default_roster().tutors)


# what the outgoing tutor says when handing the student to each tutor of the default roster
ANNOUNCEMENTS: Mapping[str, str] = _HandoffLines()


def shipped_route_tool(name: str) -> llm.FunctionTool:
    """A routing tool of the shipped roster by its name, e.g. `route_to_math`."""
    roster = default_roster()
    for kind in roster.tutors:
        if route_tool_name(kind) == name:
            return route_tool(roster, kind)
    raise KeyError(name)


def readme_example(first_line: str) -> str:
    """The README's TOML example that starts with `first_line` (e.g. "[tutors.science]")."""
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    matches = [block for block in blocks if block.startswith(first_line)]
    assert len(matches) == 1, f"README has {len(matches)} TOML examples starting {first_line}"
    return matches[0]


def write_roster(directory: Path, *additions: str, text: str | None = None) -> Path:
    """A copy of the shipped roster (or `text`) with `additions` appended, as tutors.toml."""
    path = directory / "tutors.toml"
    base = SHIPPED_ROSTER.read_text(encoding="utf-8") if text is None else text
    path.write_text("\n".join([base, *additions]), encoding="utf-8")
    return path


def roster_with(directory: Path, *additions: str) -> Roster:
    return load_roster(write_roster(directory, *additions))
