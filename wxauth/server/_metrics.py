"""``/metrics``: Prometheus text, from a registry of the app's own (each app built by
:func:`~wxauth.server.create_app` has one, so many can live in one process).

Names (every label value is an app id, a ticket kind, a client name, a route template
or a status code; never a token, a key or a secret):

- ``wxauth_server_fetches_total{app,kind}``: tokens (or tickets) this process fetched;
- ``wxauth_server_fetch_failures_total{app,kind}``: fetches that failed;
- ``wxauth_server_invalidations_total{app,kind}``: tokens dropped on a client's report;
- ``wxauth_server_token_age_seconds{app,kind}``: age of the stored token;
- ``wxauth_server_token_expires_in_seconds{app,kind}``: its seconds left;
- ``wxauth_server_store_up``: 1 if the store answered this scrape, else 0;
- ``wxauth_server_requests_total{route,method,status,client}``: answered requests.

Fetch counters are this process's: with N replicas, sum them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .._errors import StoreError
from ._service import PROBE_KEY, TokenService

__all__ = ["ServiceMetrics"]


class _ManagerCollector(Collector):
    """Reads the managers' counters and the stored tokens at scrape time."""

    def __init__(self, service: TokenService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        labels = ["app", "kind"]
        fetches = CounterMetricFamily(
            "wxauth_server_fetches", "Tokens and tickets fetched by this process.", labels=labels
        )
        failures = CounterMetricFamily(
            "wxauth_server_fetch_failures", "Fetches that failed.", labels=labels
        )
        invalidations = CounterMetricFamily(
            "wxauth_server_invalidations",
            "Tokens dropped after a client reported them rejected.",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "wxauth_server_token_age_seconds", "Seconds since the stored token was fetched.",
            labels=labels,
        )  # fmt: skip
        left = GaugeMetricFamily(
            "wxauth_server_token_expires_in_seconds",
            "Seconds the stored token stays valid.",
            labels=labels,
        )
        store_up = 1.0
        try:
            self._service.store.get_meta(PROBE_KEY)
        except StoreError:
            store_up = 0.0
        for resource in self._service.resources():
            values = [resource.app_id, resource.kind]
            stats = resource.manager.stats
            fetches.add_metric(values, stats.fetches)
            failures.add_metric(values, stats.failures)
            invalidations.add_metric(values, stats.invalidations)
            if not store_up:
                continue
            try:
                token = resource.peek()
            except StoreError:
                continue
            if token is not None:
                now = resource.manager.clock()
                age.add_metric(values, max(now - token.fetched_at, 0.0))
                left.add_metric(values, max(token.expires_at - now, 0.0))
        up = GaugeMetricFamily("wxauth_server_store_up", "1 if the store answered, else 0.")
        up.add_metric([], store_up)
        yield from (fetches, failures, invalidations, age, left, up)


class ServiceMetrics(Collector):
    """The registry of one app: the managers' collector and the request counts."""

    def __init__(self, service: TokenService) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ManagerCollector(service))
        self.registry.register(self)
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str, str], int] = {}

    def count(self, route: str, method: str, status: int, client: str) -> None:
        """Count one answered request."""
        key = (route, method, str(status), client)
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        """The request counts (a collector of its own registry)."""
        requests = CounterMetricFamily(
            "wxauth_server_requests",
            "Requests answered, by route template, method, status and client.",
            labels=["route", "method", "status", "client"],
        )
        with self._lock:
            counts = sorted(self._requests.items())
        for labels, value in counts:
            requests.add_metric(list(labels), value)
        yield requests

    def render(self) -> bytes:
        """The Prometheus text exposition (worker thread: reads the store)."""
        return generate_latest(self.registry)
