"""The real stack on one machine: PostgreSQL, Kafka (KRaft), Dapr (scheduler + daprd) and Jaeger;
Keycloak for the OAuth tests; the project image and a local Kubernetes cluster.

Development tooling only (the product never imports it and the image does not hold it).
Entry points: :func:`devstack.cli.main` (``python -m devstack up|down|status|serve|image``),
:class:`devstack.stack.Stack`, :func:`devstack.sidecar.start_sidecar`
and :func:`devstack.components.render`.
"""
