"""One student's conversation: its state, the `AgentSession`, the tutors, their
instructions, in-session routing, fixed lines and presence."""
