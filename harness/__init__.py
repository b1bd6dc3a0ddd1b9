"""What the tests and the benchmarks share: fakes of what crosses the process boundary,
simulated and real speech, the real-server, PostgreSQL and web stacks, the browser, and
measurement helpers. It imports `agent`; neither `tests` nor `bench` is imported here."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "harness" / "fixtures"
QUESTION_WAV = FIXTURES / "question.wav"
TURN_CLIPS = FIXTURES / "turns"
