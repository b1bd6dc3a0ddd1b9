"""Settings and the tutor roster: what an operator and a school configure."""
