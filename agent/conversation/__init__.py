"""One student's conversation: its state, the session, the tutors and in-session routing."""
