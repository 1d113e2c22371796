"""The daemon's Prometheus endpoint (prometheus-client).

Values are read on each scrape from the daemon's latest snapshot (refreshed by
its loop about twice a second), so serving metrics costs the loop nothing per
event. Exposed, all prefixed ``streamlearn_``:

=========================================  =======  ===============================================
name                                       type     meaning
=========================================  =======  ===============================================
``events_total``                           counter  records read and handled by this process
``dead_letters_total``                     counter  records sent to the dead-letter sink
``quarantined_total``                      counter  records dead-lettered unprocessed because processing them
                                                    alone ended the process ``max_crashes`` times (``engine.quarantine``)
``fenced_total``                           counter  checkpoints refused because a newer member had taken the lane
                                                    (``engine.fence``); the lane was dropped
``outputs_total``                          counter  predictions / decisions published
``checkpoints_total``                      counter  checkpoints written by this process
``events_per_second``                      gauge    recent throughput (a few seconds' window)
``consumer_lag{partition}``                gauge    high watermark − next offset to process
``consumer_lag_total``                     gauge    the sum over owned partitions
``checkpoint_age_seconds{lane}``           gauge    seconds since the lane's last checkpoint
``checkpoint_duration_seconds{lane}``      gauge    how long the lane's last checkpoint took
``learner_metric{lane,metric,window}``     gauge    the learner's running metric (e.g. Accuracy): ``window``
                                                    is ``all`` (cumulative) or N (the last N events)
``assigned_partitions``                    gauge    partitions this daemon owns
``broker_connected``                       gauge    1 while the broker answers, 0 during an outage
=========================================  =======  ===============================================

A *lane* is one learner: ``global``, or ``<topic>-<partition>`` with ``scope = "partition"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from streamlearn.engine.processor import split_windowed_name

__all__ = ["SnapshotCollector", "serve_metrics"]


class SnapshotCollector(Collector):
    """Turns ``snapshot()`` (a dict, see ``Daemon.snapshot``) into Prometheus metrics."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        s = self.snapshot()
        for name, doc in (
            ("events", "Records read and handled by this process."),
            ("dead_letters", "Records sent to the dead-letter sink."),
            ("quarantined", "Records dead-lettered unprocessed: processing them ended the process max_crashes times."),
            ("fenced", "Checkpoints refused because another member had taken the lane (a stale, e.g. frozen, member)."),
            ("outputs", "Outputs (predictions, decisions) published."),
            ("checkpoints", "Checkpoints written by this process."),
        ):
            yield CounterMetricFamily(f"streamlearn_{name}", doc, value=s.get(name, 0))
        yield GaugeMetricFamily("streamlearn_events_per_second", "Recent throughput.", value=s.get("events_per_second", 0.0))
        lag = GaugeMetricFamily("streamlearn_consumer_lag", "High watermark minus the next offset to process.", labels=["partition"])
        for partition, value in sorted(s.get("lag_by_partition", {}).items()):
            lag.add_metric([partition], value)
        yield lag
        yield GaugeMetricFamily("streamlearn_consumer_lag_total", "Consumer lag summed over owned partitions.", value=s.get("lag", 0))
        age = GaugeMetricFamily("streamlearn_checkpoint_age_seconds", "Seconds since the lane's last checkpoint.", labels=["lane"])
        duration = GaugeMetricFamily("streamlearn_checkpoint_duration_seconds", "Duration of the lane's last checkpoint.", labels=["lane"])
        metric = GaugeMetricFamily(
            "streamlearn_learner_metric", "The learner's running metric, cumulative (window=all) or over the last N events.", labels=["lane", "metric", "window"]
        )
        for lane, info in sorted(s.get("lanes", {}).items()):
            age.add_metric([lane], info["checkpoint_age_seconds"])
            duration.add_metric([lane], info["checkpoint_seconds"])
            for key, value in info["metrics"].items():
                if value is None:  # no data yet: no sample rather than a made-up 0
                    continue
                name, window = split_windowed_name(key)
                metric.add_metric([lane, name, "all" if window is None else str(window)], value)
        yield age
        yield duration
        yield metric
        yield GaugeMetricFamily("streamlearn_assigned_partitions", "Partitions this daemon owns.", value=len(s.get("partitions", ())))
        yield GaugeMetricFamily("streamlearn_broker_connected", "1 while the broker answers.", value=1.0 if s.get("connected") else 0.0)


def serve_metrics(snapshot: Callable[[], dict[str, Any]], port: int, addr: str = "0.0.0.0") -> Any:
    """Serve ``/metrics`` on ``addr:port`` in a background thread; returns the server (``.shutdown()``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
