"""OpenTelemetry tracing: one span per RPC, a child span per pipeline stage.

Spans carry no personal identifiers. Without an exporter configured the SDK's
no-op path costs little; `configure_tracing` wires an exporter when asked.
"""

from __future__ import annotations

from opentelemetry import trace

tracer = trace.get_tracer("nba.decision")


def span(name: str):
    return tracer.start_as_current_span(name)
