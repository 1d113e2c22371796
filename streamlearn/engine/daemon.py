"""The Kafka consumer daemon: ``streamlearn run CONFIG`` (or :class:`Daemon` in Python).

It consumes ``[kafka] topic`` in a consumer group, runs the config's learner on
every event, publishes outputs to ``output_topic`` and bad events to the
dead-letter topic, and checkpoints learner + processor state with the source
positions (see docs/architecture.md, "Delivery semantics, concretely"):

* **Start**: each learner loads its latest good checkpoint and the consumer
  seeks to the positions stored in it; partitions without a stored position
  start by ``offset_reset``. Group offsets are committed only after a checkpoint
  is durable, so lag tools work, but restarts never depend on them. Every event
  is therefore in the state exactly once however the process dies (outputs are
  at-least-once and carry their source position).
* **Stop** (SIGTERM/SIGINT, or the ``stop`` event): finish the batch, write a
  final checkpoint, commit, leave the group, return.
* **Broker trouble**: connecting, a missing topic and delivery of outputs are
  retried with exponential backoff and logged; ``connect_timeout_seconds > 0``
  bounds the wait (then :class:`~streamlearn.connectors.kafka.BrokerUnavailable`,
  exit code 1 from the CLI). A stored offset that no longer exists follows
  ``offset_reset`` with one clear log line (``fail``: exit code 1).
* **scope = "global"**: one learner for the whole topic; a second daemon in the
  group gets no partitions and refuses to run (the first keeps going).
* **scope = "partition"**: one learner per partition, each checkpointed under
  ``<checkpoint.dir>/<topic>-<partition>/``. On a rebalance a daemon checkpoints
  the partitions it gives up and loads those it receives from the (shared)
  store, so several daemons in one group share the work. A learner whose
  partition comes back and whose checkpoint is still the newest is kept in
  memory; partitions lost by eviction are dropped without writing anything, as
  another member may already own them.
* **Fencing**: taking a lane bumps its epoch in ``fence.json`` and every
  checkpoint re-checks it first (:mod:`streamlearn.engine.fence`), so a member
  frozen past its session timeout that wakes up still believing it owns a
  partition cannot write into it: the write is refused, the lane dropped, an
  error logged and ``fenced`` counted; checkpoints it slipped in are never loaded.

Live numbers are in :meth:`Daemon.snapshot` and, with ``metrics_port``, on a
Prometheus endpoint (``engine.prometheus``).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import sys
import threading
import time
from typing import Any

import structlog
from kafka.errors import KafkaError

from streamlearn.connectors.base import Sink, Source
from streamlearn.connectors.files import open_sink
from streamlearn.connectors.kafka import (
    GlobalScopeConflict,
    KafkaConnectorError,
    KafkaSink,
    KafkaSource,
    RebalanceHooks,
    Stopped,
    client_for,
    partition_key,
    quiet_kafka_logging,
)
from streamlearn.engine.checkpointing import Checkpointer
from streamlearn.engine.config import Config, ConfigError, load_config
from streamlearn.engine.fence import Fenced
from streamlearn.engine.loop import Engine
from streamlearn.engine.processor import rounded

__all__ = ["Daemon", "Lane", "run_daemon"]

log = structlog.get_logger("streamlearn.daemon")

#: Seconds a stopping daemon keeps retrying to deliver its last outputs (when connect_timeout_seconds is 0).
SHUTDOWN_DELIVERY_SECONDS = 30.0

#: Metric-history points kept per learner (the daemon runs forever; the replay report needs them all).
HISTORY_KEPT = 1000


@dataclasses.dataclass
class Lane:
    """One learner with its processor, engine, checkpointer and source (a partition or the topic)."""

    name: str
    source: Any
    engine: Engine
    checkpointer: Checkpointer
    #: Sequence number of the checkpoint the state was loaded from (0: none).
    restored_seq: int = 0

    @property
    def processor(self) -> Any:
        return self.engine.processor

    @property
    def seq(self) -> int:
        """Sequence of the newest checkpoint matching the in-memory state."""
        last = self.checkpointer.last
        return last.seq if last is not None else self.restored_seq

    def drain(self) -> int:
        """Process everything buffered for this lane; returns the records handled."""
        engine, checkpointer, source = self.engine, self.checkpointer, self.source
        total = 0
        while source.buffered():
            n = engine.step()
            checkpointer.after_batch(n)
            total += n
        if not total:
            engine.idle()
            checkpointer.after_batch(0)  # a time-based checkpoint may be due
        history = engine.stats.history
        if len(history) > 2 * HISTORY_KEPT:
            del history[:-HISTORY_KEPT]
        return total

    def checkpoint_if_changed(self) -> None:
        """Store what changed since the last checkpoint (also a fresh lane's start position)."""
        if self.checkpointer.events > self.checkpointer.events_before or not self.restored_seq:
            self.checkpointer.final()


class Daemon(RebalanceHooks):
    """The consumer daemon; ``Daemon(config).run(stop)`` blocks until ``stop`` is set.

    Parameters
    ----------
    config
        A validated :class:`Config` (``[kafka]`` and ``[checkpoint] dir`` are used).
    metrics_port
        Prometheus port (overrides ``kafka.metrics_port``; 0: no endpoint).
    consumer_options, producer_options
        Extra client settings (tests, tuning): kafka-python keyword arguments or
        librdkafka properties, depending on ``[kafka] client``.
    """

    def __init__(
        self,
        config: Config,
        *,
        metrics_port: int | None = None,
        metrics_addr: str = "0.0.0.0",
        consumer_options: dict[str, Any] | None = None,
        producer_options: dict[str, Any] | None = None,
    ):
        if not config.checkpoint.dir:
            raise ConfigError("checkpoint.dir is required by the daemon: its checkpoints make every event count exactly once")
        self.config = config
        self.kafka = config.kafka
        self.scope = config.kafka.scope
        self.metrics_port = config.kafka.metrics_port if metrics_port is None else metrics_port
        self.metrics_addr = metrics_addr
        self.consumer_options = consumer_options or {}
        self.producer_options = producer_options or {}
        self.client, self._source_class, self._open_sinks_with = client_for(config.kafka.client)
        self.source: KafkaSource | None = None
        self.lanes: dict[str, Lane] = {}
        self._parked: dict[str, Lane] = {}
        self._reload_global = False
        #: Set when the run ends by an error: from then on nothing is checkpointed.
        self._failed = False
        self.outputs: Sink | None = None
        self.dead_letters: Sink | None = None
        self._close_producer: Any = None
        self._retired = collections.Counter()
        #: Checkpoints refused because a newer owner had taken the lane.
        self._fenced = 0
        self._rate: collections.deque = collections.deque(maxlen=20)
        self._snapshot: dict[str, Any] = {"state": "starting", "connected": False, "events": 0}
        self._snapshot_due = 0.0
        self.metrics_server: Any = None

    # ------------------------------------------------------------------ building

    def _lane_dir(self, tp: Any | None) -> str:
        root = self.config.checkpoint.dir
        return root if tp is None else f"{root.rstrip('/')}/{tp.topic}-{tp.partition}"

    def _build_lane(self, name: str, source: Source, directory: str) -> Lane:
        config = self.config
        lane_config = dataclasses.replace(config, checkpoint=dataclasses.replace(config.checkpoint, dir=directory))
        learner = config.build_learner()
        processor = config.build_processor(learner, emit=self.outputs is not None)
        checkpointer = Checkpointer.from_config(lane_config, learner, processor, source, sinks=[self.outputs, self.dead_letters])
        engine = Engine(
            processor, source, outputs=self.outputs, dead_letters=self.dead_letters, checkpointer=checkpointer, **config.engine_options()
        )
        # A partition lane is built when assigned: its writer now. The global lane is built
        # before the group answers; it takes the fence once the topic is assigned to it.
        epoch = checkpointer.take_fence() if name != "global" else None
        restored = checkpointer.restore()
        engine.stats.records = engine.stats.resumed_at = checkpointer.events_before
        lane = Lane(name, source, engine, checkpointer, restored_seq=int(restored.metadata.get("seq", 0)) if restored else 0)
        log.info("learner ready", lane=name, checkpoints=directory, resumed_events=checkpointer.events_before, epoch=epoch)
        return lane

    def _open_sinks(self, stop: threading.Event) -> None:
        cfg, config = self.kafka, self.config
        topics = {}
        if cfg.output_topic:
            topics["outputs"] = cfg.output_topic
        elif config.output.predictions:
            self.outputs = open_sink(config.output.predictions)
        if cfg.dead_letter_topic or not config.output.dead_letters:
            topics["dead_letters"] = cfg.dead_letter_topic or f"{cfg.topic}.dlq"
        else:
            self.dead_letters = open_sink(config.output.dead_letters)
        if not topics:
            return
        sinks, self._close_producer = self._open_sinks_with(cfg, topics, stop, self.producer_options)
        self.outputs = sinks.get("outputs", self.outputs)
        self.dead_letters = sinks.get("dead_letters", self.dead_letters)
        log.info("publishing", **{k: f"kafka:{t}" for k, t in topics.items()})

    # ------------------------------------------------------------------ rebalance hooks (kafka-python's IO thread)

    def on_revoked(self, partitions: set[Any]) -> None:
        if not partitions:
            return
        log.info("partitions revoked", partitions=_keys(partitions))
        if self._failed:
            return  # a batch may have been cut short: the last checkpoint is the consistent state
        if self.scope == "global":
            lane = self.lanes.get("global")
            if lane is not None:
                self._fenced_checkpoint(lane)
            return
        for tp in sorted(partitions):
            lane = self.lanes.pop(_lane_name(tp), None)
            if lane is None:
                continue
            if self._fenced_checkpoint(lane):
                self._parked[lane.name] = lane
            self.source.drop_view(tp)

    def on_lost(self, partitions: set[Any]) -> None:
        if not partitions:
            return
        log.warning("partitions lost (evicted from the group); their unsaved progress is dropped", partitions=_keys(partitions))
        if self.scope == "global":
            self._reload_global = True
            return
        for tp in partitions:
            lane = self.lanes.pop(_lane_name(tp), None)
            if lane is not None:
                self._retire(lane)
            self.source.drop_view(tp)

    def on_assigned(self, partitions: set[Any]) -> None:
        if self.scope == "global":
            owner = self.source.owner_conflict
            if owner is not None:
                raise GlobalScopeConflict(
                    f"another daemon already consumes group {self.kafka.group_id!r} with scope = 'global' "
                    f"(host {owner.get('host', '?')}, pid {owner.get('pid', '?')}); a global learner needs a single consumer. "
                    "Stop the other daemon, or use scope = 'partition' to share the work"
                )
            if self._reload_global:
                self._reload_global = False
                old = self.lanes.pop("global", None)
                if old is not None:
                    self._retire(old)
                self.lanes["global"] = self._build_lane("global", self.source, self._lane_dir(None))
            self.lanes["global"].checkpointer.take_fence()
            log.info("partitions assigned", partitions=_keys(partitions))
            return
        log.info("partitions assigned", partitions=_keys(partitions))
        for tp in sorted(partitions):
            name = _lane_name(tp)
            lane = self._parked.pop(name, None)
            directory = self._lane_dir(tp)
            if lane is not None and lane.seq and lane.seq == _latest_seq(lane.checkpointer.store):
                # The kept learner is still the newest state; it resumes where it stopped, as the lane's new writer.
                lane.checkpointer.take_fence()
                self.source.view(tp, reuse=lane.source)
            else:
                if lane is not None:
                    log.info("a newer checkpoint exists; reloading", lane=name)
                    self._retire(lane)
                self.source.forget([tp])
                lane = self._build_lane(name, self.source.view(tp), directory)
            self.lanes[name] = lane
        for lane in self._parked.values():
            self._retire(lane)
        self._parked.clear()

    def _fenced_checkpoint(self, lane: Lane) -> bool:
        """Checkpoint what changed; False when a newer owner fenced this lane out (then it is dropped)."""
        try:
            lane.checkpoint_if_changed()
        except Fenced as exc:
            self._fence_out(lane, exc)
            return False
        return True

    def _fence_out(self, lane: Lane, exc: Fenced) -> None:
        """A newer owner took ``lane``: drop it, its unsaved progress and its buffered records."""
        log.error("fenced out: another member owns this lane now; dropping it without writing", lane=lane.name, error=str(exc))
        self._fenced += 1
        if self.lanes.get(lane.name) is lane:
            del self.lanes[lane.name]
        self._retire(lane)
        if self.scope == "global":
            self._reload_global = True  # rebuilt from the store when the group assigns the topic again
            self.source.abandon(set(self.source.assigned))
        else:
            self.source.drop_view(lane.source.tp)
            self.source.abandon({lane.source.tp})

    def _retire(self, lane: Lane) -> None:
        stats = lane.engine.stats
        self._retired["events"] += stats.records - stats.resumed_at
        self._retired["dead_letters"] += stats.dead_letters
        self._retired["quarantined"] += stats.quarantined
        self._retired["outputs"] += stats.outputs
        self._retired["checkpoints"] += lane.checkpointer.written

    # ------------------------------------------------------------------ running

    def run(self, stop: threading.Event | None = None) -> dict[str, Any]:
        """Consume until ``stop`` is set; returns the final snapshot.

        Raises :class:`~streamlearn.connectors.kafka.KafkaConnectorError` subclasses
        (broker unreachable past the timeout, a second global member, ``offset_reset = "fail"``).
        """
        stop = stop or threading.Event()
        quiet_kafka_logging(debug=_debug_logging())
        if self.metrics_port:
            from streamlearn.engine.prometheus import serve_metrics

            self.metrics_server = serve_metrics(self.snapshot, self.metrics_port, self.metrics_addr)
            log.info("prometheus metrics", url=f"http://{self.metrics_addr}:{self.metrics_port}/metrics")
        clean = False
        try:
            self._set_state("connecting")
            try:
                self._start(stop)
            except Stopped:
                clean = True
                return self.snapshot()
            self._set_state("running")
            log.info("daemon running", client=self.client, topic=self.kafka.topic, group_id=self.kafka.group_id, scope=self.scope, learner=self.config.learner.name)
            self._loop(stop)
            clean = True
        finally:
            self._shutdown(clean)
        return self.snapshot()

    def _start(self, stop: threading.Event) -> None:
        self.source = self._source_class(
            self.kafka, hooks=self, exclusive=self.scope == "global", stop=stop, consumer_options=self.consumer_options
        )
        self.source.open()
        self._open_sinks(stop)
        if self.scope == "global":
            self.lanes["global"] = self._build_lane("global", self.source, self._lane_dir(None))

    def _loop(self, stop: threading.Event) -> None:
        source = self.source
        next_log = time.monotonic() + self.config.engine.log_every_seconds
        while not stop.is_set():
            source.fill()
            for lane in list(self.lanes.values()):
                try:
                    lane.drain()
                except Fenced as exc:
                    self._fence_out(lane, exc)
            now = time.monotonic()
            if now >= self._snapshot_due:
                self._update_snapshot()
            if now >= next_log:
                next_log = now + self.config.engine.log_every_seconds
                s = self._snapshot
                log.info(
                    "progress",
                    events=s["events"],
                    events_per_s=round(s["events_per_second"], 1),
                    lag=s["lag"],
                    dead_letters=s["dead_letters"],
                    checkpoints=s["checkpoints"],
                    **rounded(_first_metrics(s)),
                )

    def _shutdown(self, clean: bool) -> None:
        """Final checkpoints (only after a clean stop), then leave the group and close everything."""
        self._set_state("stopping")
        self._failed = not clean
        try:
            if clean and self.source is not None and self.source.consumer is not None:
                for sink in (self.outputs, self.dead_letters):
                    if isinstance(sink, KafkaSink):
                        # The stop event is set by now: bound the last deliveries by time instead.
                        sink.stop, sink.timeout = None, self.kafka.connect_timeout_seconds or SHUTDOWN_DELIVERY_SECONDS
                for lane in list(self.lanes.values()):
                    self._fenced_checkpoint(lane)
        except BaseException:
            self._failed = True
            raise
        finally:
            if self.source is not None:
                self.source.close()
            for sink in (self.outputs, self.dead_letters):
                if sink is not None and (clean or not isinstance(sink, KafkaSink)):
                    try:
                        sink.close()
                    except KafkaConnectorError as exc:
                        log.error("outputs not delivered before exit (the next run re-emits them)", error=str(exc))
            if self._close_producer is not None:
                self._close_producer()
            self._update_snapshot()
            self._set_state("stopped")
            if self.metrics_server is not None:
                self.metrics_server.shutdown()
                self.metrics_server.server_close()
            s = self._snapshot
            log.info("daemon stopped", events=s["events"], dead_letters=s["dead_letters"], checkpoints=s["checkpoints"], clean=clean)

    # ------------------------------------------------------------------ numbers

    def _set_state(self, state: str) -> None:
        self._snapshot = {**self._snapshot, "state": state}

    def _update_snapshot(self) -> None:
        now = time.monotonic()
        self._snapshot_due = now + 0.5
        lanes = [*self.lanes.values(), *self._parked.values()]
        totals = collections.Counter(self._retired)
        lane_info = {}
        for lane in lanes:
            stats, ckpt = lane.engine.stats, lane.checkpointer
            totals["events"] += stats.records - stats.resumed_at
            totals["dead_letters"] += stats.dead_letters
            totals["quarantined"] += stats.quarantined
            totals["outputs"] += stats.outputs
            totals["checkpoints"] += ckpt.written
            lane_info[lane.name] = {
                "events": stats.records,
                "metrics": lane.processor.metrics(),
                "checkpoint_age_seconds": ckpt.age_seconds,
                "checkpoint_seconds": ckpt.last_duration,
                "checkpoint_events": ckpt.last.events if ckpt.last else ckpt.events_before,
                "checkpoint_sha256": ckpt.last.sha256 if ckpt.last else None,
            }
        self._rate.append((now, totals["events"]))
        first_t, first_n = self._rate[0]
        rate = (totals["events"] - first_n) / (now - first_t) if now > first_t else 0.0
        source = self.source
        lag = source.lag() if source is not None and source.consumer is not None else {}
        self._snapshot = {
            "state": self._snapshot.get("state", "running"),
            "time": time.time(),
            "connected": bool(source is not None and source.consumer is not None and source.connected),
            "events": totals["events"],
            "events_in_state": sum(info["events"] for info in lane_info.values()),
            "events_per_second": rate,
            "dead_letters": totals["dead_letters"],
            "quarantined": totals["quarantined"],
            "fenced": self._fenced,
            "outputs": totals["outputs"],
            "checkpoints": totals["checkpoints"],
            "lag": sum(lag.values()),
            "lag_by_partition": lag,
            "partitions": sorted(partition_key(tp.topic, tp.partition) for tp in (source.assigned if source else ())),
            "lanes": lane_info,
        }

    def snapshot(self) -> dict[str, Any]:
        """The latest live numbers (thread-safe: a new dict each refresh)."""
        return self._snapshot


def _debug_logging() -> bool:
    """True when the CLI configured logging at debug level (``--log-level debug``)."""
    if not structlog.is_configured():
        return False
    try:
        return bool(structlog.get_logger().is_enabled_for(logging.DEBUG))
    except AttributeError:
        return False


def _client_errors() -> tuple[type[BaseException], ...]:
    try:
        from confluent_kafka import KafkaException
    except ImportError:
        return ()
    return (KafkaException,)


def _lane_name(tp: Any) -> str:
    return f"{tp.topic}-{tp.partition}"


def _keys(partitions: set[Any]) -> list[str]:
    return sorted(partition_key(tp.topic, tp.partition) for tp in partitions)


def _latest_seq(store: Any) -> int:
    entries = store.list()
    return entries[-1].seq if entries else 0


def _first_metrics(snapshot: dict[str, Any]) -> dict[str, float]:
    lanes = snapshot.get("lanes", {})
    return next(iter(lanes.values()))["metrics"] if len(lanes) == 1 else {}


def run_daemon(config_path: str, stop: threading.Event | None = None) -> int:
    """``streamlearn run CONFIG``: 0 after a clean stop, 1 with a message on failure (ConfigError → the CLI's 2)."""
    config = load_config(config_path)
    daemon = Daemon(config)
    try:
        daemon.run(stop)
    except (KafkaConnectorError, KafkaError, *_client_errors()) as exc:
        log.error("daemon failed", error=str(exc))
        print(f"streamlearn: {exc}", file=sys.stderr)
        return 1
    return 0
