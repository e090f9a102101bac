"""The metric objects of this process (docs/operations.md lists them), and one-line helpers to count.

A registry of our own rather than prometheus_client's global one: /metrics shows exactly what we
declare here (plus the process figures), whatever else a library registers. Labels hold route
templates, outcomes and region ids only: never a raw path, an address or a name.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, MutableMapping
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from starlette.routing import Mount

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
REGISTRY.register(GC_COLLECTOR)

REQUEST_DURATION = Histogram(
    "onderwijsregio_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template",
    ["method", "route", "status"],
    registry=REGISTRY,
)
MUTATIONS_APPLIED = Counter(
    "onderwijsregio_mutations_applied_total",
    "Mutations a worker of this process applied, by final status",
    ["outcome"],
    registry=REGISTRY,
)
ITEMS_APPLIED = Counter(
    "onderwijsregio_mutation_items_applied_total",
    "Items of applied mutations, by their own outcome",
    ["outcome"],
    registry=REGISTRY,
)
BATCHES_APPLIED_AGAIN = Counter(
    "onderwijsregio_batches_applied_again_total",
    "Batches applied a second time, with savepoints, because something failed in the first try",
    registry=REGISTRY,
)
CALLBACK_FAILURES = Counter(
    "onderwijsregio_callback_delivery_failures_total",
    "Callback attempts that failed; final=true when the delivery was given up",
    ["final"],
    registry=REGISTRY,
)
WEBHOOK_FAILURES = Counter(
    "onderwijsregio_webhook_delivery_failures_total",
    "Webhook attempts that failed; final=true when the message was given up",
    ["final"],
    registry=REGISTRY,
)
MAIL_SENT = Counter(
    "onderwijsregio_mail_sent_total",
    "Verification mails handed to the SMTP server (or to the log without one)",
    registry=REGISTRY,
)
MAIL_FAILED = Counter(
    "onderwijsregio_mail_failed_total",
    "Verification mails the SMTP server did not take (each is retried a few times)",
    registry=REGISTRY,
)
UNMATCHED_ROUTE = "unmatched"


def route_template(scope: MutableMapping[str, Any]) -> str:
    """The matched route's template (`/api/v2/candidates/{candidateId}`), never the path itself: paths
    carry ids, and one series per id would grow without end."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED_ROUTE
    return f"{path}/{{path}}" if isinstance(route, Mount) else path


def observe_request(scope: MutableMapping[str, Any], status: int, started: float) -> None:
    """For the request middleware: `started` is its time.perf_counter() at arrival."""
    template = route_template(scope)
    REQUEST_DURATION.labels(scope.get("method", ""), template, str(status)).observe(
        time.perf_counter() - started
    )


def note_applied(outcomes: Iterable[tuple[str, int, int]]) -> None:
    """After an apply commit: (status, succeeded items, failed items) of each mutation it finished."""
    for status, succeeded, failed in outcomes:
        MUTATIONS_APPLIED.labels(status).inc()
        ITEMS_APPLIED.labels("succeeded").inc(succeeded)
        ITEMS_APPLIED.labels("failed").inc(failed)


def note_applied_again() -> None:
    """A batch's first try (without savepoints) met a failure and was rolled back (engine/apply.py)."""
    BATCHES_APPLIED_AGAIN.inc()


def note_delivery_failure(counter: Counter, *, given_up: bool) -> None:
    counter.labels("true" if given_up else "false").inc()
