"""Session records: every turn, handoff, flag and alert of a session, in one store.

`RecordsStore` is the database (SQLite by default, PostgreSQL at scale, one code path);
`RecordWriter` queues records off the voice path and writes them in batches;
`SessionRecorder` turns a live `AgentSession`'s events into records.
"""

from agent.records.store import RecordsConfigError, RecordsStore
from agent.records.writer import RecordWriter

__all__ = [
    "RecordWriter",
    "RecordsConfigError",
    "RecordsStore",
]
