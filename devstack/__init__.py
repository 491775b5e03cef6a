"""The real stack on one machine: PostgreSQL, Kafka (KRaft) and Dapr (scheduler + daprd).

Entry points: :func:`devstack.cli.main` (``todo-agent stack up|down|status``,
``python -m devstack``), :class:`devstack.stack.Stack`, :func:`devstack.sidecar.start_sidecar`
and :func:`devstack.components.render`.
"""
