"""A small OTLP/HTTP trace receiver for tests and benchmarks: it decodes what an app exports.

An app under test points ``OTEL_EXPORTER_OTLP_ENDPOINT`` at :attr:`TraceReceiver.url`; every
``POST /v1/traces`` body (an ``ExportTraceServiceRequest``, protobuf) is decoded and its spans
kept as :class:`ReceivedSpan` in arrival order.

>>> with TraceReceiver() as receiver:
...     ...  # run the app with OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url
...     names = {span.name for span in receiver.spans}
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from devstack.procs import free_port


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """One exported span: the ``service.name`` of its resource, its name and its trace id (hex)."""

    service: str
    name: str
    trace_id: str


def spans_in(body: bytes) -> list[ReceivedSpan]:
    """The spans of one OTLP/HTTP export request body."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        service = attributes.get("service.name", "?")
        for scope in resource_spans.scope_spans:
            spans.extend(ReceivedSpan(service, span.name, span.trace_id.hex()) for span in scope.spans)
    return spans


class TraceReceiver:
    """Listens on 127.0.0.1 (a free port) from construction until :meth:`close`."""

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                receiver._take(self.rfile.read(int(self.headers.get("content-length", 0))))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The endpoint to export to (``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def spans(self) -> list[ReceivedSpan]:
        """A copy of the spans received so far, in arrival order."""
        with self._lock:
            return list(self._spans)

    @property
    def requests(self) -> int:
        """How many export requests arrived."""
        with self._lock:
            return self._requests

    def _take(self, body: bytes) -> None:
        spans = spans_in(body)
        with self._lock:
            self._requests += 1
            self._spans.extend(spans)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TraceReceiver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
