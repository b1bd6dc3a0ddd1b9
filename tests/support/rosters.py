"""Rosters for tests: the shipped `tutors.toml` plus the README's examples, written to a
directory the way a school would copy and edit the file."""

from __future__ import annotations

import re
from pathlib import Path

from agent.tutors.roster import SHIPPED_ROSTER, Roster, load_roster

README = Path(__file__).resolve().parent.parent.parent / "README.md"


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
