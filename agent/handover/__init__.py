"""The floor handover between workers: the protocol, the room it runs over, the outgoing and incoming sides."""
