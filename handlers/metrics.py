"""``GET /metrics``: the hub's numbers in Prometheus's text format (prometheus_client).

The hub counts in plain ints (`hub.hub.HubCounters`, the same numbers /healthz
shows); `MetricsExporter` copies them into prometheus_client's metrics when
scraped, so a message costs nothing more with metrics on, apart from the
broadcast histogram, observed once per broadcast (`hub.metrics.BroadcastTimer`).

With ``--processes=N`` the server's parent gives the workers one private
directory (`prepare_multiprocess`) before forking; each worker's metrics live
in files there, each worker copies its numbers into them every second
(`SYNC_SECONDS`) and on a scrape, and whichever worker answers a scrape reports
the sum over all of them (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import atexit
import glob
import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tornado.ioloop import PeriodicCallback

from handlers.api import ApiHandler
from hub.hub import Hub
from hub.metrics import BroadcastTimer
from hub.peer import ECHO, HUB

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SYNC_SECONDS = 1.0
"""How often each worker of ``--processes=N`` copies its numbers for the others' scrapes."""
DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
"""Seconds; a fan-out to a few thousand members takes well under a millisecond to 10 ms."""
REJECTION_REASONS = {
    "capacity": "rejected_at_capacity",
    "per_ip": "rejected_per_ip",
    "origin": "rejected_origin",
    "unauthorized": "rejected_unauthorized",
}
"""``wshub_connections_rejected_total``'s reasons and the `HubCounters` they come from."""
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def available() -> bool:
    """Whether prometheus_client is installed (without importing it: in the
    parent of ``--processes=N`` that must wait for `prepare_multiprocess`)."""
    return importlib.util.find_spec("prometheus_client") is not None


def prepare_multiprocess() -> str:
    """Before forking the workers: a private directory for their metrics,
    removed when this (the parent) process exits."""
    directory = tempfile.mkdtemp(prefix="wshub-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    parent = os.getpid()

    def remove() -> None:
        if os.getpid() == parent:  # the workers inherit this exit hook too
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
    return directory


def _dead_workers(directory: str) -> set[int]:
    """Processes that wrote live gauges in ``directory`` and are gone."""
    dead = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        found = _LIVE_GAUGE_FILE.search(os.path.basename(path))
        if found is None:
            continue
        pid = int(found.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(pid)
        except PermissionError:
            pass  # alive, someone else's (a reused pid)
    return dead


@dataclass(slots=True)
class ProcessSeries:
    """A worker's ``process_*`` series in multiprocess mode (see `MetricsExporter`)."""

    collector: Any  # prometheus_client.ProcessCollector, read, never registered
    gauges: dict[str, Any]  # sample name -> Gauge
    cpu: Any  # Counter


class MetricsExporter:
    """The hub's metrics, in this process's registry or, with several
    workers, in the directory they share."""

    def __init__(self, hub: Hub) -> None:
        import prometheus_client as prom
        from prometheus_client import multiprocess

        self.hub = hub
        self.directory = os.environ.get(MULTIPROC_ENV) or None
        self._prom = prom
        self._multiprocess = multiprocess
        prom.disable_created_metrics()  # no *_created series beside every counter
        if self.directory is None:
            self.registry: Any = prom.CollectorRegistry()
            prom.ProcessCollector(registry=self.registry)
            prom.PlatformCollector(registry=self.registry)
            prom.GCCollector(registry=self.registry)
        else:
            self.registry = None  # a scrape reads every worker's files instead
        self._define(prom, self.registry)
        self._process = None if self.directory is None else self._define_process(prom)
        self._copied: dict[tuple[int, str], float] = {}  # (id(counter), label) -> value copied
        hub.outbox.timer = BroadcastTimer(hub.clock, self.broadcast_seconds.observe)
        self._syncing = PeriodicCallback(self.sync, SYNC_SECONDS * 1000)

    def _define(self, prom: Any, registry: Any) -> None:
        def gauge(name: str, text: str, labels: Iterable[str] = (), mode: str = "livesum") -> Any:
            return prom.Gauge(name, text, labels, registry=registry, multiprocess_mode=mode)

        def counter(name: str, text: str, labels: Iterable[str] = ()) -> Any:
            return prom.Counter(name, text, labels, registry=registry)

        self.connections = gauge("wshub_connections", "Open WebSocket connections", ["endpoint"])
        self.rooms = gauge(
            "wshub_rooms", "Rooms with a member here (with --processes: summed over workers)"
        )
        self.memberships = gauge("wshub_memberships", "Room memberships (a member of 3 rooms: 3)")
        self.broker_connected = gauge(
            "wshub_broker_connected",
            "1 while the broker is reachable (always with memory)",
            (),
            "livemin",
        )
        self.received = counter(
            "wshub_messages_received", "Text and binary frames from /ws clients"
        )
        self.published = counter(
            "wshub_messages_published", "Messages published, by where they came from", ["source"]
        )
        self.deliveries = counter(
            "wshub_deliveries", "Room messages handed to members (presence and acks are not)"
        )
        self.bytes_sent = counter("wshub_bytes_sent", "Bytes of frames handed to client sockets")
        self.rejected = counter(
            "wshub_connections_rejected", "WebSocket connections refused, by why", ["reason"]
        )
        self.disconnects = counter(
            "wshub_disconnects", "Connections ended, by close code", ["code"]
        )
        self.errors = counter("wshub_errors", "Error frames sent to clients, by code", ["code"])
        self.broadcast_seconds = prom.Histogram(
            "wshub_broadcast_duration_seconds",
            "From a publish arriving to the end of the flush that wrote it to local members",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        for endpoint in (HUB, ECHO):
            self.connections.labels(endpoint)
        for source in ("ws", "api"):
            self.published.labels(source)
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason)

    def _define_process(self, prom: Any) -> ProcessSeries:
        """prometheus_client's multiprocess mode has no ``process_*`` series: each
        worker copies its own (read by prometheus_client's `ProcessCollector`)
        into gauges that sum the live workers, and CPU into a counter that keeps
        what a dead worker spent."""

        def gauge(name: str, text: str, mode: str) -> Any:
            return prom.Gauge(name, text, registry=None, multiprocess_mode=mode)

        return ProcessSeries(
            prom.ProcessCollector(registry=None),
            {
                "process_resident_memory_bytes": gauge(
                    "process_resident_memory_bytes",
                    "Resident memory, summed over workers",
                    "livesum",
                ),
                "process_virtual_memory_bytes": gauge(
                    "process_virtual_memory_bytes", "Virtual memory, summed over workers", "livesum"
                ),
                "process_open_fds": gauge(
                    "process_open_fds", "Open file descriptors, summed over workers", "livesum"
                ),
                "process_max_fds": gauge(
                    "process_max_fds", "Each worker's open-file limit (the highest)", "livemax"
                ),
                "process_start_time_seconds": gauge(
                    "process_start_time_seconds", "Start of the oldest live worker", "livemin"
                ),
            },
            prom.Counter(
                "process_cpu_seconds", "CPU seconds of every worker, dead ones too", registry=None
            ),
        )

    def _copy_process(self, series: ProcessSeries) -> None:
        for family in series.collector.collect():
            for sample in family.samples:
                if sample.name == "process_cpu_seconds_total":
                    self._copy(series.cpu, "", sample.value)
                elif sample.name in series.gauges:
                    series.gauges[sample.name].set(sample.value)

    # -- copying the hub's numbers ------------------------------------------------

    def start(self) -> None:
        """With several workers, copy this one's numbers every `SYNC_SECONDS`."""
        if self.directory is not None:
            self._syncing.start()

    def stop(self) -> None:
        """Stop copying; a worker that stops takes its live gauges with it."""
        self._syncing.stop()
        self.hub.outbox.timer = None
        if self.directory is not None:
            self._multiprocess.mark_process_dead(os.getpid(), self.directory)

    def sync(self) -> None:
        """Copy the hub's numbers into the metrics (counters grow by what was
        counted since the last copy)."""
        hub = self.hub
        counters = hub.counters
        hub_connections = sum(1 for p in hub.peers.values() if p.kind == HUB)
        self.connections.labels(HUB).set(hub_connections)
        self.connections.labels(ECHO).set(len(hub.peers) - hub_connections)
        self.rooms.set(len(hub.rooms))
        self.memberships.set(sum(len(members) for members in hub.rooms.values()))
        self.broker_connected.set(1 if hub.broker.stats()["broker"]["connected"] else 0)
        self._copy(self.received, "", counters.messages_received)
        self._copy(self.published, "ws", counters.published - counters.published_from_api)
        self._copy(self.published, "api", counters.published_from_api)
        self._copy(self.deliveries, "", counters.deliveries)
        self._copy(self.bytes_sent, "", counters.bytes_sent)
        for reason, name in REJECTION_REASONS.items():
            self._copy(self.rejected, reason, getattr(counters, name))
        for code, value in list(counters.disconnects_by_code.items()):
            self._copy(self.disconnects, code, value)
        for code, value in list(counters.errors_by_code.items()):
            self._copy(self.errors, code, value)
        if self._process is not None:
            self._copy_process(self._process)
        if self.directory is not None:
            for pid in _dead_workers(self.directory):
                self._multiprocess.mark_process_dead(pid, self.directory)

    def _copy(self, counter: Any, label: str, value: float) -> None:
        key = (id(counter), label)
        grown = value - self._copied.get(key, 0)
        if grown > 0:
            (counter.labels(label) if label else counter).inc(grown)
            self._copied[key] = value

    def scrape(self) -> bytes:
        """The text exposition: this process's metrics, or every worker's summed."""
        self.sync()
        prom = self._prom
        if self.directory is None:
            return prom.generate_latest(self.registry)
        registry = prom.CollectorRegistry()
        self._multiprocess.MultiProcessCollector(registry, self.directory)
        return prom.generate_latest(registry)

    @property
    def content_type(self) -> str:
        return self._prom.CONTENT_TYPE_LATEST


class MetricsHandler(ApiHandler):
    """``GET /metrics``: open without ``--api_key``; with one, the API's key check."""

    def initialize(  # type: ignore[override]
        self, exporter: MetricsExporter, api_keys: tuple[str, ...]
    ) -> None:
        super().initialize(exporter.hub, api_keys, 0)
        self.exporter = exporter

    def prepare(self) -> None:
        if self.api_keys:
            super().prepare()  # 401 without the key

    def get(self) -> None:
        self.set_header("Content-Type", self.exporter.content_type)
        self.set_header("Cache-Control", "no-store")
        self.write(self.exporter.scrape())


def metrics_routes(exporter: MetricsExporter | None, api_keys: tuple[str, ...]) -> list[tuple]:
    """``/metrics`` when metrics are on; otherwise no route (404)."""
    if exporter is None:
        return []
    return [(r"/metrics", MetricsHandler, {"exporter": exporter, "api_keys": api_keys})]
