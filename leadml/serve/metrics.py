"""Prometheus metrics of one app (its own CollectorRegistry) and the ASGI middleware that
counts requests by route template and status and times them.

Routes are labelled by their template (`/v1/leads/{lead_id}`), never by the raw path, so
the label set stays small and no lead data reaches the metrics. The same middleware writes
the one access-log line per request (method, path without query string, status, time): as
text, or as one JSON object (config serve.access_log). Every client-supplied value in it is
escaped (CR, LF, NUL and every other control character become visible `\\xNN` escapes) and
cut short first, so no client can forge a log line or flood the log.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
SCORE_BUCKETS = tuple(range(10, 101, 10))
CONTENT_TYPE = CONTENT_TYPE_LATEST
access_log = logging.getLogger("leadml.serve.access")
LOGGED_CHARS = 200  # a client-supplied value is cut to this many characters before logging
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\]")


def log_safe(value: object, limit: int = LOGGED_CHARS) -> str:
    """A client-supplied value as one harmless log token: control characters (and the
    backslash, so escapes cannot be faked) escaped, then cut to `limit` characters."""
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    text = text[: limit * 4]  # bound the work before escaping
    escaped = _CONTROL.sub(_escape, text)
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if code == 0x5C:  # the backslash itself
        return "\\\\"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class ServeMetrics:
    """The service's counters and histograms, registered in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "leadml_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "leadml_http_request_duration_seconds",
            "Time to answer a request, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.scores = Histogram(
            "leadml_score",
            "Scores (1-100) given by the online scorer",
            buckets=SCORE_BUCKETS,
            registry=reg,
        )
        self.grades = Counter(
            "leadml_scored_leads", "Leads scored online, by grade", ["grade"], registry=reg
        )
        self.model = Gauge(
            "leadml_model_info", "The model being served (value 1)", ["model_version"], registry=reg
        )
        self.reloads = Counter(
            "leadml_model_reloads", "Model reloads by result", ["result"], registry=reg
        )

    def observe_scores(self, scores: Iterable[int], grades: Iterable[str]) -> None:
        for score, grade in zip(scores, grades, strict=True):
            self.scores.observe(score)
            self.grades.labels(grade).inc()

    def serving(self, version: str) -> None:
        """Point the model gauge at the version now served."""
        self.model.clear()
        self.model.labels(version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path)."""

    def __init__(self, app, metrics: ServeMetrics, log_format: str = "text") -> None:
        self.app = app
        self.metrics = metrics
        self.log_format = log_format

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_with_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self._record(scope, status[0], time.perf_counter() - start)

    def _record(self, scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.requests.labels(scope["method"], template, str(status)).inc()
        self.metrics.latency.labels(template).observe(seconds)
        if self.log_format != "off":
            access_log.info("%s", access_line(scope, status, seconds, self.log_format))


def access_line(scope: dict, status: int, seconds: float, log_format: str = "text") -> str:
    """One access-log line: method, path (no query string), status, time; every client value
    escaped and cut (`log_safe`). JSON adds the client address, user agent and request id."""
    method, path = log_safe(scope.get("method", ""), 20), log_safe(scope.get("path", ""))
    if log_format != "json":
        return f"{method} {path} {status} {seconds * 1e3:.1f}ms"
    headers = dict(scope.get("headers") or ())
    client = scope.get("client") or ("", 0)
    record = {
        "method": method,
        "path": path,
        "status": status,
        "ms": round(seconds * 1e3, 1),
        "client": log_safe(client[0], 64),
        "user_agent": log_safe(headers.get(b"user-agent", b"")),
        "request_id": log_safe(headers.get(b"x-request-id", b""), 100),
    }
    return json.dumps(record, ensure_ascii=True)
