"""Structured JSON logs: one object per line, with the trace id of the
current span and the decision id when the line is about one decision.

Personal identifiers are never logged: log calls pass decision ids, catalog
ids and counts, not identities or person keys.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

from decision.tracing import current_trace_id

# Set by the servicer for the duration of one call.
decision_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("decision_id", default="")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace_id = current_trace_id()
        if trace_id:
            entry["trace_id"] = trace_id
        decision_id = getattr(record, "decision_id", "") or decision_id_var.get()
        if decision_id:
            entry["decision_id"] = decision_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def configure_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
