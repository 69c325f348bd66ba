"""Telemetry through OpenTelemetry: spans, metrics with a Prometheus endpoint, JSON logs.

Where it sits: the recording ``Telemetry`` of ``impl.telemetry`` (whose facade the
runtime, the clients and the resilience library call).  It needs the optional
dependencies ``opentelemetry-sdk`` and ``opentelemetry-exporter-prometheus``
(``pip install 'distcheck[telemetry]'``); importing it without them raises an
ImportError that says so.

It keeps its own tracer and meter providers rather than OpenTelemetry's global ones,
so a program that configures OpenTelemetry for itself is not overridden, and a test
can start and close one after another.  What it writes:

- spans, to ``spans``: a path (one JSON object per line per finished span, the shape
  docs/observability.md gives, which ``distcheck show`` draws as a message chart),
  ``"console"`` (the SDK's console exporter), or any ``SpanExporter``;
- metrics (``impl.telemetry.METRICS``), through any ``metric_readers`` given and,
  with ``metrics_port`` (0: a free one), in Prometheus's text format at
  ``http://HOST:PORT/metrics`` (``metrics_address`` says where);
- steps and the runtime's notes, to ``logs`` (a path or an open text stream), one
  JSON object per line: time, node, the step's action, its term or ballot when it has
  one, and the trace and span it happened in.

``sample`` (between 0 and 1, default 1) is the share of the traces this process
starts that are recorded, chosen by trace id; a trace started elsewhere is recorded
here exactly when its ``traceparent`` says it is sampled.  So a client with
``sample=0.01`` has one call in a hundred recorded on every node it reaches, and the
others cost the servers a context and a span that records nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

try:
    from opentelemetry import trace as otel_trace
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
    from prometheus_client import CollectorRegistry, start_http_server
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"impl.telemetry.otel needs OpenTelemetry's SDK and Prometheus exporter ({exc.name} is missing): "
        "pip install 'distcheck[telemetry]'"
    ) from exc

from distcheck.impl.telemetry import METRICS, Span, Telemetry
from distcheck.impl.telemetry.context import TraceContext, current

_KINDS = {"client": SpanKind.CLIENT, "server": SpanKind.SERVER, "internal": SpanKind.INTERNAL}
#: the span attribute naming the node (or client) a span ran on
NODE = "distcheck.node"


class _RecordedSpan(Span):
    def __init__(self, span: Any) -> None:
        ctx = span.get_span_context()
        super().__init__(TraceContext(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", bool(ctx.trace_flags.sampled)))
        self._span = span
        self._ended = False

    def set(self, key: str, value: str | int | float | bool) -> None:
        self._span.set_attribute(key, value)

    def fail(self, error: BaseException) -> None:
        self._span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._span.end()


class JsonLinesSpanExporter(SpanExporter):
    """Finished spans as JSON lines in ``path`` (appended; one file may gather the
    spans of several processes, each line written whole)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(span_record(s), sort_keys=True) + "\n" for s in spans]
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            self._file.write("".join(lines))
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as the JSON object a span file holds (docs/observability.md)."""
    ctx = span.get_span_context()
    assert ctx is not None
    parent = span.parent
    attributes = dict(span.attributes or {})
    return {
        "traceId": f"{ctx.trace_id:032x}",
        "spanId": f"{ctx.span_id:016x}",
        "parentSpanId": f"{parent.span_id:016x}" if parent is not None else None,
        "name": span.name,
        "kind": span.kind.name.lower(),
        "node": attributes.get(NODE),
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name.lower(),
        "attributes": attributes,
    }


class JsonLinesFormatter(logging.Formatter):
    """A log record as one JSON object: time, level, node, message, the fields a step
    carries (``action``, ``term``, ``ballot``), and the trace and span it belongs to."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("node", "action", "term", "ballot", "trace_id", "span_id"):
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if "trace_id" not in out:
            ctx = current()
            if ctx is not None:
                out["trace_id"], out["span_id"] = ctx.trace_id, ctx.span_id
        return json.dumps(out, default=str)


def _term_or_ballot(action: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for source in (action, extra):
        if "term" in source and "term" not in out:
            out["term"] = source["term"]
        for key in ("ballot", "bal", "view"):
            if key in source and "ballot" not in out:
                out["ballot"] = source[key]
    return out


class OpenTelemetry(Telemetry):
    """Spans, metrics and logs through OpenTelemetry's SDK (module docstring).  Use as a
    context manager, or ``install`` it and ``close`` it when done."""

    records_spans = True

    def __init__(
        self,
        service: str = "distcheck",
        *,
        spans: Path | str | SpanExporter | None = None,
        batch: bool = True,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        metric_readers: Sequence[MetricReader] = (),
        logs: Path | IO[str] | None = None,
        sample: float = 1.0,
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"sample is the share of traces recorded, between 0 and 1; not {sample}")
        resource = Resource.create({"service.name": service})
        # A trace begun here is recorded by its id's share; one begun elsewhere as its
        # traceparent's sampled flag says, so every node records the same traces.
        sampler = ParentBased(TraceIdRatioBased(sample))
        self.tracer_provider = TracerProvider(resource=resource, sampler=sampler)
        exporter: SpanExporter | None
        if spans is None:
            exporter = None
        elif spans == "console":
            exporter = ConsoleSpanExporter()
        elif isinstance(spans, (str, Path)):
            exporter = JsonLinesSpanExporter(Path(spans))
        else:
            exporter = spans
        if exporter is not None:
            processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
            self.tracer_provider.add_span_processor(processor)
        self.tracer = self.tracer_provider.get_tracer("distcheck")
        readers = list(metric_readers)
        self._server: Any = None
        self.metrics_address: tuple[str, int] | None = None
        if metrics_port is not None:
            self.registry = CollectorRegistry()
            readers.append(PrometheusMetricReader(registry=self.registry))
            self._server, _ = start_http_server(metrics_port, addr=metrics_host, registry=self.registry)
            self.metrics_address = (metrics_host, int(self._server.server_port))
        self.meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        self.meter = self.meter_provider.get_meter("distcheck")
        self._instruments: dict[str, Any] = {}
        self._lock = threading.Lock()
        for name, (kind, _, _) in METRICS.items():
            if kind == "counter":
                # Counters start at zero, so the endpoint names them before the first event.
                self._instrument(name).add(0)
        self._handler: logging.Handler | None = None
        self.logger = logging.getLogger("distcheck.steps")
        if logs is not None:
            handler: logging.Handler = (
                logging.FileHandler(logs, encoding="utf-8") if isinstance(logs, Path) else logging.StreamHandler(logs)
            )
            handler.setFormatter(JsonLinesFormatter())
            self.logger.addHandler(handler)
            self.logger.setLevel(logging.INFO)
            self.logger.propagate = False
            self._handler = handler
        self._closed = False

    @property
    def metrics_url(self) -> str | None:
        if self.metrics_address is None:
            return None
        host, port = self.metrics_address
        return f"http://{host}:{port}/metrics"

    # ------------------------------------------------------------------ spans

    def start_span(
        self,
        name: str,
        parent: TraceContext | None,
        *,
        kind: Literal["client", "server", "internal"] = "internal",
        attributes: Mapping[str, str | int | float | bool] | None = None,
    ) -> Span:
        context = None
        if parent is not None:
            remote = SpanContext(
                int(parent.trace_id, 16),
                int(parent.span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED if parent.sampled else TraceFlags.DEFAULT),
            )
            context = otel_trace.set_span_in_context(NonRecordingSpan(remote))
        span = self.tracer.start_span(name, context=context, kind=_KINDS[kind], attributes=dict(attributes or {}))
        return _RecordedSpan(span)

    # ---------------------------------------------------------------- metrics

    def _instrument(self, name: str) -> Any:
        instrument = self._instruments.get(name)
        if instrument is None:
            with self._lock:
                instrument = self._instruments.get(name)
                if instrument is None:
                    kind, unit, description = METRICS[name]
                    if kind == "counter":
                        instrument = self.meter.create_counter(name, unit=unit, description=description)
                    elif kind == "histogram":
                        instrument = self.meter.create_histogram(name, unit=unit, description=description)
                    else:
                        instrument = self.meter.create_gauge(name, unit=unit, description=description)
                    self._instruments[name] = instrument
        return instrument

    def record_metric(self, name: str, value: float, attributes: Mapping[str, str]) -> None:
        kind = METRICS[name][0]
        instrument = self._instrument(name)
        if kind == "counter":
            instrument.add(value, dict(attributes))
        elif kind == "histogram":
            instrument.record(value, dict(attributes))
        else:
            instrument.set(value, dict(attributes))

    # ------------------------------------------------------------------- logs

    def log_step(self, node: str, action: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        if self._handler is None:
            return
        fields: dict[str, Any] = {"node": node, "action": dict(action), **_term_or_ballot(action, extra)}
        self.logger.info(str(action.get("type", "step")), extra=fields)

    def log_note(self, text: str) -> None:
        if self._handler is not None:
            node, colon, _ = text.partition(": ")
            self.logger.info(text, extra={"node": node} if colon else {})

    # -------------------------------------------------------------- lifecycle

    def flush(self) -> None:
        """Export the spans finished so far (the batch processor holds them a while)."""
        self.tracer_provider.force_flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._handler is not None:
            self.logger.removeHandler(self._handler)
            self._handler.close()

    def __enter__(self) -> OpenTelemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_spans(path: Path) -> list[dict[str, Any]]:
    """Every span record in a span file (a line cut short by a writer still at work is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out
