"""Kafka source and sink on confluent-kafka (librdkafka): the same guarantees, with C doing the I/O.

:class:`ConfluentSource` keeps :class:`~streamlearn.connectors.kafka.KafkaSource`'s
bookkeeping (positions, checkpoint seeks, partition views, ``offset_reset``, the
outage watch) and replaces only the client calls. Where librdkafka differs:

* Rebalance callbacks run inside ``consume``, in the daemon's own thread. Start
  offsets (checkpoint or policy) are handed to ``assign`` itself, because a seek
  is only valid on a partition that is already being fetched.
* Policy offsets are resolved to concrete numbers (the low or high watermark)
  before assigning, so a checkpoint pins them at once.
* ``scope = "global"`` (``exclusive``): librdkafka runs no assignor written in
  Python, so the single-owner rule is enforced by the member instead. It uses
  ``cooperative-sticky``, which never takes all partitions from the member that
  owns them; a member whose *first* assignment does not cover the whole topic has
  joined a group that someone else consumes and refuses to run. When it leaves,
  the owner gets the partitions it lent back and resumes them from its own
  positions.
* Stored offsets that no longer exist arrive as ``_AUTO_OFFSET_RESET`` message
  errors (``auto.offset.reset = error``) or are found beyond the high watermark.

:class:`ConfluentSink` asks librdkafka for delivery reports of failures only, so an
acknowledged record costs no Python call; ``flush`` waits for the queue to drain
and re-sends failures with backoff, as the kafka-python sink does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as WireTopicPartition
from kafka import TopicPartition

from streamlearn.connectors.base import Record, Sink
from streamlearn.connectors.kafka import (
    Backoff,
    BrokerUnavailable,
    KafkaConnectorError,
    KafkaSink,
    KafkaSource,
    Stopped,
    client_settings,
    encode_value,
    ensure_topics,
    retry_call,
)

__all__ = ["ConfluentSink", "ConfluentSource", "librdkafka_settings", "open_sinks"]

log = structlog.get_logger("streamlearn.kafka")

_OUT_OF_RANGE = (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE)


def librdkafka_settings(config: Any) -> dict[str, Any]:
    """librdkafka properties from a ``KafkaConfig`` (bootstrap, client id, SASL, SSL, logging)."""
    settings: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap_servers,
        "client.id": config.client_id,
        "security.protocol": config.security_protocol.lower(),
        # Its log lines go through the "kafka" logger that quiet_kafka_logging() tames;
        # the daemon reports outages itself.
        "logger": logging.getLogger("kafka.librdkafka"),
        "error_cb": _log_client_error,
    }
    optional = {
        "sasl.mechanism": config.sasl_mechanism,
        "sasl.username": config.sasl_username,
        "sasl.password": config.sasl_password,
        "ssl.ca.location": config.ssl_cafile,
        "ssl.certificate.location": config.ssl_certfile,
        "ssl.key.location": config.ssl_keyfile,
    }
    settings.update({k: v for k, v in optional.items() if v is not None})
    return settings


def _log_client_error(error: KafkaError) -> None:
    log.debug("librdkafka", error=str(error))


class ConfluentSource(KafkaSource):
    """A consumer-group member on librdkafka; see the module notes for where it differs."""

    client_errors = (KafkaException,)

    def __init__(self, config: Any, **options: Any):
        super().__init__(config, **options)
        self._partition_count = 0
        self._joined = False
        self._closing = False
        self._conflict: dict[str, Any] | None = None
        #: Start offsets chosen while an assignment is being handled (given to assign()).
        self._starts: dict[Any, int] | None = None
        self._wire: dict[Any, WireTopicPartition] = {}
        self._stale_highwater: dict[Any, int] = {}

    def open(self) -> ConfluentSource:
        """Connect (retrying with backoff), wait for the topic, join the group."""
        cfg = self.config
        backoff = Backoff(f"cannot reach the Kafka broker at {cfg.bootstrap_servers}", cfg.connect_timeout_seconds, self.stop)
        options = {
            **librdkafka_settings(cfg),
            "group.id": cfg.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # Every assigned partition is positioned explicitly (checkpoint or policy).
            "auto.offset.reset": "error",
            "session.timeout.ms": cfg.session_timeout_ms,
            "heartbeat.interval.ms": max(100, cfg.session_timeout_ms // 3),
            "partition.assignment.strategy": "cooperative-sticky" if self.exclusive else "range,roundrobin",
            "enable.partition.eof": False,
            "reconnect.backoff.max.ms": 5000,
            **self.consumer_options,
        }
        self.consumer = Consumer(options)
        catch = (KafkaException,)
        retry_call(lambda: self.consumer.list_topics(timeout=3), backoff, catch)
        log.info("connected to Kafka", bootstrap_servers=cfg.bootstrap_servers, group_id=cfg.group_id, client="confluent-kafka")
        backoff.what = f"topic {self.topic!r} does not exist (yet) on {cfg.bootstrap_servers}"
        while not (count := retry_call(self._count_partitions, backoff, catch)):
            backoff.wait("no partitions")
        self._partition_count = count
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        return self

    def _count_partitions(self) -> int:
        topic = self.consumer.list_topics(self.topic, timeout=3).topics.get(self.topic)
        return 0 if topic is None or topic.error is not None else len(topic.partitions)

    # ------------------------------------------------------------------ rebalance callbacks (inside consume)

    def _on_assign(self, consumer: Consumer, partitions: list[WireTopicPartition]) -> None:
        if self._closing:
            return
        tps = {TopicPartition(p.topic, p.partition) for p in partitions}
        if self.exclusive and not self._joined and len(tps) < self._partition_count:
            self._conflict = {"host": "?", "pid": "?", "partitions_given": len(tps), "partitions": self._partition_count}
        self._joined = True
        self.assigned |= tps
        for tp in tps:
            self._next.setdefault(tp, None)
            # librdkafka keeps the high watermark of an earlier assignment: ignored until a fetch
            # refreshes it (asking the broker instead is not reliable on every broker).
            self._stale_highwater[tp] = consumer.get_watermark_offsets(self._wire_tp(tp), cached=True)[1]
        self._starts = {}
        try:
            self._run_hook(self.hooks.on_assigned, tps)
            self._run_hook(self._position_assigned, tps)
            starts = self._starts
        finally:
            self._starts = None
        # A partition a failed hook left unpositioned starts at the group's offset; fill() raises first.
        wire = [WireTopicPartition(tp.topic, tp.partition, starts.get(tp, -1000)) for tp in sorted(tps)]
        if self.exclusive:  # cooperative-sticky hands out increments
            consumer.incremental_assign(wire)
        else:
            consumer.assign(wire)

    def _on_revoke(self, consumer: Consumer, partitions: list[WireTopicPartition]) -> None:
        if self._closing:
            return
        tps = {TopicPartition(p.topic, p.partition) for p in partitions}
        self._run_hook(self.hooks.on_revoked, tps)
        self._release(tps)
        offsets, self._deferred_commits = self._deferred_commits, {}
        if offsets:
            try:
                self._commit(offsets)
            except KafkaException as exc:
                # Only lag monitoring depends on it; the checkpoint is durable.
                log.warning("commit before rebalance failed", error=str(exc))

    def _on_lost(self, consumer: Consumer, partitions: list[WireTopicPartition]) -> None:
        if self._closing:
            return
        tps = {TopicPartition(p.topic, p.partition) for p in partitions}
        self._run_hook(self.hooks.on_lost, tps)
        self._release(tps, keep_positions=False)

    @property
    def owner_conflict(self) -> dict[str, Any] | None:
        return self._conflict

    # ------------------------------------------------------------------ the client's part

    def _poll(self, timeout_ms: int) -> list[tuple[Any, list[Record]]]:
        consumer, most = self.consumer, self.config.max_poll_records
        messages = consumer.consume(most, 0)
        if not messages:
            # Wait for the first record only, then take what is already queued: a
            # trickle is handled at once instead of after a full batch or the timeout.
            first = consumer.poll(timeout_ms / 1000)
            if first is None:
                return []
            messages = [first, *consumer.consume(most - 1, 0)] if most > 1 else [first]
        by_partition: dict[tuple[str, int], list[Record]] = {}
        gone: dict[Any, tuple[int, None]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                self._message_error(message, error, gone)
                continue
            topic, partition = message.topic(), message.partition()
            records = by_partition.get((topic, partition))
            if records is None:
                records = by_partition[(topic, partition)] = []
            records.append(
                Record(message.value(), {"topic": topic, "partition": partition, "offset": message.offset()}, None, message.key(), message.timestamp()[1])
            )
        out = []
        for (topic, partition), records in by_partition.items():
            tp = TopicPartition(topic, partition)
            if tp in self.assigned and tp not in gone:
                out.append((tp, records))
        if gone:
            self._out_of_range(gone)
        return out

    def _message_error(self, message: Any, error: KafkaError, gone: dict[Any, tuple[int, None]]) -> None:
        if error.code() in _OUT_OF_RANGE and message.topic() is not None:
            tp = TopicPartition(message.topic(), message.partition())
            offset = self._next.get(tp)
            if tp in self.assigned and offset is not None:
                gone[tp] = (offset, None)
            return
        if error.fatal():
            raise KafkaConnectorError(f"Kafka client failed: {error}")
        log.debug("consumer error", error=str(error))

    def _wire_tp(self, tp: Any) -> WireTopicPartition:
        wire = self._wire.get(tp)
        if wire is None:
            wire = self._wire[tp] = WireTopicPartition(tp.topic, tp.partition)
        return wire

    def _seek(self, tp: Any, offset: int) -> None:
        if self._starts is not None:
            self._starts[tp] = offset
        else:
            self.consumer.seek(WireTopicPartition(tp.topic, tp.partition, offset))

    def _seek_by_policy(self, tp: Any, policy: str) -> int | None:
        try:
            low, high = self.consumer.get_watermark_offsets(self._wire_tp(tp), timeout=5)
        except KafkaException:
            self._seek(tp, OFFSET_BEGINNING if policy == "earliest" else OFFSET_END)
            return None
        offset = low if policy == "earliest" else high
        self._seek(tp, offset)
        return offset

    def _position(self, tp: Any) -> int | None:
        try:
            offset = self.consumer.position([self._wire_tp(tp)])[0].offset
        except KafkaException:
            return None
        return offset if offset >= 0 else None

    def _highwater(self, tp: Any) -> int | None:
        high = self.consumer.get_watermark_offsets(self._wire_tp(tp), cached=True)[1]
        if self._stale_highwater.get(tp) == high:
            return None  # not refreshed by a fetch since the partition came (back) to this member
        self._stale_highwater.pop(tp, None)
        return high if high >= 0 else None

    def _commit(self, offsets: dict[Any, int]) -> None:
        self.consumer.commit(offsets=[WireTopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()], asynchronous=False)

    def _probe(self) -> str | None:
        try:
            topic = self.consumer.list_topics(self.topic, timeout=2).topics.get(self.topic)
        except KafkaException as exc:
            return str(exc)
        if topic is None or topic.error is not None:  # reachable, but the topic is in trouble (deleted?)
            log.warning("the broker answers but the topic does not", topic=self.topic, error=str(topic.error if topic else "missing"))
        return None

    def close(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            # Leaving the group revokes everything; the owner has checkpointed already.
            self._closing = True
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.debug("consumer close", error=str(exc))


# --------------------------------------------------------------------------- sink


class ConfluentSink(KafkaSink):
    """JSON records to a topic through librdkafka; ``flush`` returns once all are acknowledged.

    ``failures`` collects, per topic, the values whose delivery failed (filled by
    the producer's delivery callback, shared by the sinks of one producer).
    """

    def __init__(self, producer: Producer, topic: str, failures: dict[str, list[tuple[bytes, Any]]], *, timeout: float = 0.0, stop: threading.Event | None = None):
        super().__init__(producer, topic, timeout=timeout, stop=stop)
        self.failures = failures

    def write(self, records: list[dict[str, Any]]) -> None:
        self._produce([encode_value(record) for record in records])
        self.written += len(records)

    def _produce(self, values: list[bytes]) -> None:
        produce, topic = self.producer.produce, self.topic
        for value in values:
            try:
                produce(topic, value)
            except BufferError as exc:  # the local queue is full: flush() re-sends it with backoff
                self.failures.setdefault(topic, []).append((value, exc))
        self.producer.poll(0)

    def flush(self) -> None:
        backoff = None
        while True:
            queued = self.producer.flush(5.0)
            failed = self.failures.pop(self.topic, [])
            if not queued and not failed:
                return
            if backoff is None:
                backoff = Backoff(f"cannot deliver records to topic {self.topic!r}", self.timeout, self.stop)
            error = failed[-1][1] if failed else "delivery timed out"
            try:
                backoff.wait(f"{queued} queued, {len(failed)} failed: {error}")
            except Stopped:
                raise BrokerUnavailable(f"stopped while {queued + len(failed)} records to {self.topic!r} were undelivered") from None
            self._produce([value for value, _ in failed])


def open_sinks(config: Any, topics: dict[str, str], stop: threading.Event, producer_options: dict[str, Any] | None = None) -> tuple[dict[str, Sink], Callable[[], None]]:
    """One :class:`ConfluentSink` per ``{name: topic}`` on a shared producer, and the producer's ``close``."""
    backoff = Backoff(f"cannot reach the Kafka broker at {config.bootstrap_servers}", config.connect_timeout_seconds, stop)
    ensure_topics(client_settings(config), list(topics.values()), backoff)
    failures: dict[str, list[tuple[bytes, Any]]] = {}

    def on_delivery(error: KafkaError | None, message: Any) -> None:
        if error is not None:
            failures.setdefault(message.topic(), []).append((message.value(), error))

    producer = Producer(
        {
            **librdkafka_settings(config),
            "acks": "all",
            # Outputs are at-least-once and carry their source position (as with kafka-python).
            "enable.idempotence": False,
            "linger.ms": 5,
            # Acknowledged records need no Python callback; failures are re-sent by flush().
            "delivery.report.only.error": True,
            "on_delivery": on_delivery,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 262_144,
            # Undelivered records come back to flush() (and its backoff) after this long.
            "message.timeout.ms": 30_000,
            **(producer_options or {}),
        }
    )
    sinks = {name: ConfluentSink(producer, topic, failures, timeout=config.connect_timeout_seconds, stop=stop) for name, topic in topics.items()}
    return sinks, lambda: producer.flush(5)
