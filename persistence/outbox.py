"""The outbox's one shared flag: which transactions wrote lead events."""

from __future__ import annotations

# Set on a connection's info when a transaction writes events: the unit of work then wakes the
# relay after commit (persistence/relay.py). Every repository that writes lead events sets it.
EVENTS_WRITTEN = "leadflow.events_written"
