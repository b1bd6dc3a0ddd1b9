"""Bringing a worker into a room: the typed dispatch plan and its metadata codec, the
dispatch client, the student's token."""
