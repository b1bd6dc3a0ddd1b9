"""The floor handover between workers: the protocol, the room it runs over, the outgoing
side (a crossing) and the incoming side (a job's start)."""
