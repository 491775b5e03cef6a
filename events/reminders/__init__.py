"""Reminders: one scheduled job per task reminder, fired once, delivered as notifications.

The flow, end to end:

1. A task change commits; ``scheduling.ReminderScheduling`` sees its outbox row after commit and
   creates, moves or cancels the job ``reminder-task-<id>`` (``jobs.DaprJobScheduler`` through
   daprd's Jobs API, or ``jobs.InProcessJobScheduler`` in the embedded default). A change
   another process committed (the recurrence role's next occurrence) reaches the api as a
   ``task-updates`` event, and the api schedules its job then (``ReminderScheduling.follow``).
2. ``reconciler`` repairs what a crash between commit and scheduling lost, at start-up and
   periodically, and marks reminders more than ``reminder_grace_minutes`` late as missed.
3. The job calls back ``POST /job/reminder-task-<id>`` (``firing``): if the task is still open and
   the reminder still current, a ``ReminderDue`` goes to the outbox, once per (task, remind_at).
   Callbacks that arrive together fire in one transaction (``firing.GroupFiring``).
4. The ``reminders`` subscriber (``notifications``) delivers it: in-app (a ``Notification`` row
   and a ``todo.notification.created.v1`` event for the real-time hub), email, webhook. An email
   or webhook that fails for now is retried in the background (``retrier``, with backoff from
   ``deliveries``), beside the stream, so one user's failing endpoint delays no one else.
5. ``routes`` lists a user's in-app notifications and marks them read.
"""
