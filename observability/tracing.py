"""OpenTelemetry tracing: set up once per process, off unless switched on, and the trace
context that crosses the outbox.

    configure("todo-api")                 # True when tracing is on in this process
    with span("use_case tasks.add", attributes={"todo.user": hashed}):
        ...
    row.trace_context = traceparent()     # the writer's W3C context, stored with the outbox row
    with span("outbox publish", context=context_from(row.trace_context)):
        ...                               # continues the writer's trace

The switch is ``TODO_TRACING`` (``on`` / ``off``); left unset, tracing is on exactly when an
OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), so the embedded default exports nothing.
``OTEL_SDK_DISABLED=true`` wins over both. Everything else is OpenTelemetry's own environment:
``OTEL_SERVICE_NAME`` (default: the role's name, e.g. ``todo-api``), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``/``_ARG``, ``OTEL_EXPORTER_OTLP_*`` (spans go out as OTLP over HTTP).

When tracing is off, :func:`span` and :func:`traced` cost one flag test: no span objects, no
context switches. FastAPI's own telemetry (on once a tracer provider is installed) makes the
request spans, named after the matched route; the HTTPX instrumentation the client spans;
the project adds its own where no instrumentation reaches (MCP tools, use cases, chat phases,
the relay, consumers, reminder jobs). A span per SQL statement (the SQLAlchemy
instrumentation) is there with ``TODO_TRACING_SQL=on``; without it a use case's span covers its
queries and commit.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Final, TypeVar, cast

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

SWITCH: Final = "TODO_TRACING"
#: Per-statement SQL spans, off by default: a write runs ~10 statements, and a span each more than
#: doubled the spans of a traced write (the use case's span covers its transaction either way).
SQL_SWITCH: Final = "TODO_TRACING_SQL"
_ON_WORDS: Final = frozenset({"on", "1", "true", "yes"})
_OFF_WORDS: Final = frozenset({"off", "0", "false", "no"})
_ENDPOINTS: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
#: Paths whose requests make no span: probes and scrapes would drown the real traffic; and
#: daprd's deliveries to the subscriptions (``/events/...``): daprd's own span covers each call,
#: and the consumer's apply span continues the writer's trace from the event's ``traceparent``,
#: so a request span there was one more span per event and consumer that nothing hung under.
UNTRACED_PATHS: Final = ("/healthz", "/readyz", "/metrics", "/events/")

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_TRACER: Final = trace.get_tracer("todo-agent")  # a proxy: follows the provider set later
_lock = threading.Lock()
_on = False
_sql = False

F = TypeVar("F", bound=Callable[..., Any])


class TracingConfigError(ValueError):
    """``TODO_TRACING`` holds something other than on/off."""


def _environment() -> dict[str, str]:
    """The variables this module reads, each named literally (``tests/deploy`` checks that every
    variable the manifests set is one the code reads)."""
    found = {
        "TODO_TRACING": os.environ.get("TODO_TRACING"),
        "TODO_TRACING_SQL": os.environ.get("TODO_TRACING_SQL"),
        "OTEL_SDK_DISABLED": os.environ.get("OTEL_SDK_DISABLED"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        "OTEL_SERVICE_NAME": os.environ.get("OTEL_SERVICE_NAME"),
        "OTEL_TRACES_SAMPLER": os.environ.get("OTEL_TRACES_SAMPLER"),
    }
    return {name: value for name, value in found.items() if value is not None}


def wanted(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for tracing (see the module docstring)."""
    e = _environment() if env is None else env
    if e.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    switch = e.get(SWITCH, "").strip().lower()
    if switch in ("", "auto"):
        return any(e.get(name) for name in _ENDPOINTS)
    return _switch(switch, SWITCH, " (or unset: on when OTEL_EXPORTER_OTLP_ENDPOINT is set)")


def _switch(value: str, name: str, unset: str = "") -> bool:
    word = value.strip().lower()
    if word in _ON_WORDS:
        return True
    if word in _OFF_WORDS:
        return False
    raise TracingConfigError(f"{name} must be on or off{unset}, got {word!r}")


def is_on() -> bool:
    return _on


def service_name_for(default: str, env: Mapping[str, str] | None = None) -> str:
    """The service name this process's spans carry: ``OTEL_SERVICE_NAME``, else ``default``."""
    e = _environment() if env is None else env
    return e.get("OTEL_SERVICE_NAME") or default


def configure(service_name: str, *, env: Mapping[str, str] | None = None, exact_name: bool = False) -> bool:
    """Install the tracer provider (OTLP/HTTP exporter, batched) and the HTTPX instrumentation
    when :func:`wanted`; idempotent per process. Returns whether tracing is on. ``service_name``
    gives way to ``OTEL_SERVICE_NAME`` unless ``exact_name`` (a helper process that names itself
    after its parent's service, such as ``todo-api-relay``)."""
    global _on, _sql
    with _lock:
        if _on:
            return True
        if not wanted(env):
            return False
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        e = _environment() if env is None else env
        _sql = _switch(e.get(SQL_SWITCH, "off"), SQL_SWITCH)
        attributes = {} if e.get("OTEL_SERVICE_NAME") and not exact_name else {SERVICE_NAME: service_name}
        sampler = None if e.get("OTEL_TRACES_SAMPLER") else _sampler()
        provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        HTTPXClientInstrumentor().instrument()
        _on = True
        log.info(
            "tracing on: spans of %s go out over OTLP",
            attributes.get(SERVICE_NAME, e.get("OTEL_SERVICE_NAME")),
        )
        return True


def _sampler() -> Any:
    """Every trace, but no trace that is only a query or an outgoing call: a relay's poll, a
    reconciler's scan or a retrier's check would each start a one-span trace every second."""
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_ON,
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
    )

    class NoLoneClientSpans(Sampler):
        def should_sample(
            self, parent_context: Any, trace_id: int, name: str, kind: Any = None, attributes: Any = None,
            links: Any = None, trace_state: Any = None,
        ) -> SamplingResult:  # fmt: skip
            if kind == SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return ALWAYS_ON.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return "NoLoneClientSpans"

    return ParentBased(root=NoLoneClientSpans())


def flush(timeout_ms: int = 5000) -> None:
    """Export the spans still buffered (before a process exits on its own terms)."""
    provider = trace.get_tracer_provider()
    force = getattr(provider, "force_flush", None)
    if _on and force is not None:
        force(timeout_ms)


def untraced_request(scope: Mapping[str, Any]) -> bool:
    """Whether a request makes no span (:data:`UNTRACED_PATHS`)."""
    return str(scope.get("path", "")).startswith(UNTRACED_PATHS)


def instrument_engine(engine: Any) -> None:
    """A span per SQL statement on ``engine`` (SQLAlchemy instrumentation) when tracing and
    ``TODO_TRACING_SQL`` are on."""
    if not (_on and _sql):
        return
    # The instrumentation's engine tracer, attached per engine: its ``instrument()`` entry point
    # instruments one engine per process, and refuses SQLAlchemy 2.1 by its declared range
    # (the engine events it listens to are the same in 2.1).
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    usage = get_meter("opentelemetry.instrumentation.sqlalchemy").create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    EngineTracer(tracer, engine, usage, False, {}, False)


# -- spans -------------------------------------------------------------------------------------
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    context: Context | None = None,
    links: Sequence[Link] | None = None,
) -> AbstractContextManager[Span | None]:
    """A span around a block, the current one inside it; ``nullcontext`` when tracing is off.
    An exception leaving the block is recorded on the span and marks it as an error."""
    if not _on:
        return nullcontext()
    return _TRACER.start_as_current_span(
        name, context=context, kind=kind, attributes=dict(attributes or {}), links=links
    )


def start_span(name: str, *, attributes: Mapping[str, Any] | None = None) -> Span | None:
    """A span the caller ends (``span.end()``), a child of the current one but never made
    current itself: for work that starts in one callback and ends in another, or that spans the
    yields of an async generator (where attaching a context would be detached elsewhere)."""
    if not _on:
        return None
    return _TRACER.start_span(name, attributes=dict(attributes or {}))


def traced(name: str, **attributes: Any) -> Callable[[F], F]:
    """Decorate a function (sync or async) so each call is a span named ``name``."""

    def wrap(fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                if not _on:
                    return await fn(*args, **kwargs)
                with _TRACER.start_as_current_span(name, attributes=attributes):
                    return await fn(*args, **kwargs)

            return cast(F, run_async)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            if not _on:
                return fn(*args, **kwargs)
            with _TRACER.start_as_current_span(name, attributes=attributes):
                return fn(*args, **kwargs)

        return cast(F, run)

    return wrap


def set_attribute(key: str, value: Any) -> None:
    """Add an attribute to the current span (nothing when tracing is off)."""
    if _on:
        trace.get_current_span().set_attribute(key, value)


# -- context across the outbox -----------------------------------------------------------------
def traceparent() -> str | None:
    """The current span's W3C ``traceparent`` (``00-<trace>-<span>-<flags>``), or None."""
    if not _on:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_from(traceparent: str | None) -> Context | None:
    """A context whose parent is the span ``traceparent`` names (None when there is none)."""
    if not traceparent or not _on:
        return None
    ctx = _PROPAGATOR.extract({"traceparent": traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def link_to(traceparent: str | None) -> Link | None:
    """A link to the span ``traceparent`` names (a later trace that one set in motion)."""
    ctx = context_from(traceparent)
    if ctx is None:
        return None
    return Link(trace.get_current_span(ctx).get_span_context())


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Add the current ``traceparent`` (and ``tracestate``) to outgoing ``headers``."""
    if _on:
        _PROPAGATOR.inject(headers)
    return headers


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span in hex, for log lines; None without one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


@contextmanager
def detached() -> Iterator[None]:
    """Run a block outside any current span (background work started from a request)."""
    from opentelemetry import context as otel_context

    token = otel_context.attach(Context())
    try:
        yield
    finally:
        otel_context.detach(token)
