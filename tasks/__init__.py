"""The domain: tasks, lists and reminders, their use cases (``service.TaskService``), and the unit
of work that writes task rows and their outbox events in one transaction. Of the other parts it
imports only the ``observability`` leaf."""
