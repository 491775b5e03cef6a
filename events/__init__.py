"""Events after commit: the outbox relay and its publishers, the subscriber routes, and the consumers
(recurrence, audit, the real-time WebSocket hub, reminders and their notifications)."""
