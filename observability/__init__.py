"""Traces, metrics and logs for every process role: a leaf package any other may import.

``observability.tracing`` sets up OpenTelemetry (OTLP export, off unless switched on) and
carries W3C trace context across the outbox; ``observability.metrics`` holds the Prometheus
metrics every role serves at ``/metrics``; ``observability.logs`` writes one line per event
(JSON when not on a terminal) with the trace and span ids.
"""
