"""Kafka source and sink on kafka-python: consumer groups, manual commits, exact resume.

:class:`KafkaSource` is one consumer-group member reading a topic. It never
commits on its own: the checkpointer calls :meth:`KafkaSource.commit` after a
checkpoint is durable, so the group's committed offsets (what lag tools show)
trail the stored state. Restarts do not trust them: the daemon seeks every
assigned partition to the position stored in its checkpoint, falling back to
``offset_reset`` (``earliest``/``latest``, or ``fail``) only for partitions the
checkpoint does not cover. Records are read in batches by :meth:`KafkaSource.fill`
and handed out by ``read_batch``, either from the source itself (one learner for
the whole topic) or from a :class:`PartitionSource` view per partition (one
learner per partition).

Positions: a record's position is ``{"topic", "partition", "offset"}``;
``positions()`` maps ``"topic/partition"`` to the same dict holding the *next*
offset to read.

Rebalances run the owner's hooks (:class:`RebalanceHooks`) on kafka-python's IO
thread while ``fill`` waits for them; there a blocking consumer call is
impossible, so commits made inside a hook are sent asynchronously when the hook
returns. Partitions *lost* (the member was evicted, another member may already
own them) are reported separately so that no checkpoint is written for them.

A stored offset that no longer exists (the topic was deleted and recreated, or
truncated) is found either from the broker's ``OFFSET_OUT_OF_RANGE`` or from a
position beyond the partition's high watermark; ``offset_reset`` decides what
happens, with one clear log line. A stored offset that still exists may belong
to another log (the topic was recreated and refilled past it): checkpoints
therefore also keep, per partition, the *fingerprint* of the last record taken
(:func:`record_fingerprint`: offset, timestamp, BLAKE2b of key and value). A
restored partition starts one record early, at that record; if it is not the
same record, an error is logged and ``offset_reset`` decides, as above.

:class:`KafkaSink` publishes outputs or dead letters as JSON values (non-finite
numbers become ``null``; keys that are not strings become strings) and makes
``flush`` wait until the broker has acknowledged every record, re-sending
failures with backoff (outputs are at-least-once).

Connection settings (bootstrap servers, SASL, SSL) come from ``[kafka]`` and the
``STREAMLEARN_KAFKA_*`` environment variables (see ``engine.config``).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import structlog
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition, errors
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment, ConsumerProtocolSubscription

from streamlearn.connectors.base import Record, Sink, Source
from streamlearn.connectors.files import _json_default

__all__ = [
    "Backoff",
    "BrokerUnavailable",
    "GlobalScopeConflict",
    "KafkaConnectorError",
    "KafkaSink",
    "KafkaSource",
    "OffsetPolicyError",
    "PartitionSource",
    "RebalanceHooks",
    "SingleOwnerAssignor",
    "Stopped",
    "client_for",
    "client_settings",
    "encode_value",
    "ensure_topics",
    "open_sinks",
    "partition_key",
    "quiet_kafka_logging",
    "record_fingerprint",
    "retry_call",
]

log = structlog.get_logger("streamlearn.kafka")


class KafkaConnectorError(RuntimeError):
    """A Kafka failure the daemon reports with a message (exit code 1), never a traceback."""


class BrokerUnavailable(KafkaConnectorError):
    """The broker stayed unreachable for longer than ``connect_timeout_seconds``."""


class GlobalScopeConflict(KafkaConnectorError):
    """A second daemon joined a group whose learner is global (one consumer only)."""


class OffsetPolicyError(KafkaConnectorError):
    """``offset_reset = "fail"`` and a partition has no usable stored position."""


class Stopped(Exception):  # noqa: N818 - control flow, not an error
    """The stop event was set while waiting for the broker."""


def partition_key(topic: str, partition: int) -> str:
    """The key of a partition in ``positions()`` and checkpoints: ``"topic/partition"``."""
    return f"{topic}/{partition}"


def record_fingerprint(record: Record) -> dict[str, Any]:
    """What identifies a Kafka record in its log: offset, timestamp (ms) and a BLAKE2b-128 of key and value.

    A topic deleted and refilled has a record at the same offset, but not with the
    same timestamp and bytes (both would have to repeat to the millisecond).
    """
    digest = hashlib.blake2b(digest_size=16)
    for part in (record.key, record.value):
        # Length-prefixed, and a missing key differs from an empty one.
        digest.update(b"\xff" * 8 if part is None else len(part).to_bytes(8, "little"))
        digest.update(part or b"")
    return {"offset": int(record.position["offset"]), "timestamp": record.timestamp, "blake2b": digest.hexdigest()}


def _fingerprint_from(stored: Any) -> dict[str, Any] | None:
    """A fingerprint read from a checkpoint, checked field by field (None: unusable)."""
    if not isinstance(stored, dict):
        return None
    offset, timestamp, digest = stored.get("offset"), stored.get("timestamp"), stored.get("blake2b")
    if type(offset) is not int or offset < 0 or not (timestamp is None or type(timestamp) is int) or not isinstance(digest, str):
        return None
    return {"offset": offset, "timestamp": timestamp, "blake2b": digest}


def client_for(name: str) -> tuple[str, type[KafkaSource], Callable[..., tuple[dict[str, Sink], Callable[[], None]]]]:
    """``(client, source class, open_sinks)`` for ``[kafka] client``; ``auto`` prefers librdkafka when installed."""
    if name == "auto":
        name = "confluent-kafka" if importlib.util.find_spec("confluent_kafka") is not None else "kafka-python"
    if name == "confluent-kafka":
        from streamlearn.connectors import kafka_confluent

        return name, kafka_confluent.ConfluentSource, kafka_confluent.open_sinks
    return name, KafkaSource, open_sinks


def client_settings(config: Any) -> dict[str, Any]:
    """kafka-python connection arguments from a ``KafkaConfig`` (bootstrap, client id, SASL, SSL)."""
    settings: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in config.bootstrap_servers.split(",") if s.strip()],
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
    }
    optional = {
        "sasl_mechanism": config.sasl_mechanism,
        "sasl_plain_username": config.sasl_username,
        "sasl_plain_password": config.sasl_password,
        "ssl_cafile": config.ssl_cafile,
        "ssl_certfile": config.ssl_certfile,
        "ssl_keyfile": config.ssl_keyfile,
    }
    settings.update({k: v for k, v in optional.items() if v is not None})
    return settings


def quiet_kafka_logging(debug: bool = False) -> None:
    """kafka-python logs every failed connection attempt; the daemon reports outages itself.

    Its records go to structlog at debug level (visible with ``--log-level debug``).
    """
    logger = logging.getLogger("kafka")
    if not any(isinstance(h, _StructlogHandler) for h in logger.handlers):
        logger.addHandler(_StructlogHandler())
        logger.propagate = False
    logger.setLevel(logging.DEBUG if debug else logging.CRITICAL)


class _StructlogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger("kafka-python").debug(record.getMessage(), level_name=record.levelname)


class Backoff:
    """Exponential backoff for reconnecting, bounded by ``timeout`` seconds in all (0: forever).

    ``wait(error)`` logs the failure, sleeps (waking early when ``stop`` is set, then
    raising :class:`Stopped`) and raises :class:`BrokerUnavailable` once the
    deadline has passed.
    """

    def __init__(self, what: str, timeout: float = 0.0, stop: threading.Event | None = None, initial: float = 0.5, maximum: float = 10.0):
        self.what = what
        self.timeout = timeout
        self.stop = stop or threading.Event()
        self.initial = initial
        self.maximum = maximum
        self.attempts = 0
        self.started = time.monotonic()

    @property
    def waited(self) -> float:
        return time.monotonic() - self.started

    def wait(self, error: object) -> None:
        self.attempts += 1
        if self.timeout and self.waited >= self.timeout:
            raise BrokerUnavailable(f"{self.what}: still failing after {self.waited:.0f} s ({error})")
        delay = min(self.maximum, self.initial * 2 ** (self.attempts - 1))
        if self.timeout:
            delay = max(0.0, min(delay, self.timeout - self.waited))
        log.warning(f"{self.what}; retrying", error=str(error), attempt=self.attempts, retry_in_s=round(delay, 2))
        if self.stop.wait(delay):
            raise Stopped


def retry_call(call: Callable[[], Any], backoff: Backoff, catch: tuple[type[BaseException], ...] = (errors.KafkaError, OSError)) -> Any:
    """``call()`` until it stops raising a Kafka (``catch``) error; waits and logs via ``backoff``."""
    while True:
        try:
            return call()
        except catch as exc:
            backoff.wait(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def ensure_topics(settings: dict[str, Any], topics: Iterable[str], backoff: Backoff, partitions: int = 1) -> list[str]:
    """Create the topics that do not exist yet (outputs, dead letters); returns those created.

    Brokers that auto-create topics would do it on the first write, but
    clusters usually forbid that; a topic the daemon may not create is logged
    and left to the operator.
    """
    admin = retry_call(lambda: KafkaAdminClient(**settings, bootstrap_timeout_ms=3000), backoff)
    try:
        existing = set(retry_call(admin.list_topics, backoff))
        missing = sorted(set(topics) - existing)
        if missing:
            try:
                admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
                log.info("created topics", topics=missing, partitions=partitions)
            except errors.TopicAlreadyExistsError:
                pass
            except errors.KafkaError as exc:
                log.warning("could not create topics; create them or allow auto-creation", topics=missing, error=str(exc))
        return missing
    finally:
        admin.close()


# --------------------------------------------------------------------------- assignor


def _identity() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}


class SingleOwnerAssignor(AbstractPartitionAssignor):
    """Gives every partition to one member (``scope = "global"``): the current owner, else the oldest.

    A daemon started while another one consumes the group gets no partitions,
    together with who owns them, and refuses to run; the running daemon keeps
    its partitions and its learner (preferring the member that already owns
    them makes this independent of the hosts' clocks).
    """

    name = "streamlearn-single-owner"
    version = 0

    def __init__(self) -> None:
        self.identity = _identity()
        #: Whether this member got the partitions in the last assignment.
        self.owns = False
        #: Who owns the partitions, from the last assignment (None: this member does).
        self.owner: dict[str, Any] | None = None

    def metadata(self, topics: Iterable[str]) -> Any:
        user_data = json.dumps({**self.identity, "owns": self.owns}).encode()
        return ConsumerProtocolSubscription(self.version, sorted(topics), user_data)

    def assign(self, cluster: Any, members: list[Any]) -> dict[str, Any]:
        def rank(member: Any) -> tuple[bool, float, str]:
            try:
                info = json.loads(member.metadata.user_data)
                return not info.get("owns", False), float(info["started"]), member.member_id
            except (TypeError, ValueError, KeyError):
                return True, float("inf"), member.member_id

        owner = min(members, key=rank)
        try:
            owner_info = json.loads(owner.metadata.user_data)
        except (TypeError, ValueError):
            owner_info = {}
        owner_info["member_id"] = owner.member_id
        everything = [(t, sorted(cluster.partitions_for_topic(t) or ())) for t in sorted(owner.metadata.topics)]
        note = json.dumps(owner_info).encode()
        return {m.member_id: ConsumerProtocolAssignment(self.version, everything if m is owner else [], note) for m in members}

    def on_assignment(self, assignment: Any, generation: int) -> None:
        try:
            info = json.loads(assignment.user_data or b"{}")
        except (TypeError, ValueError):
            info = {}
        self.owns = bool(assignment.partitions())
        self.owner = None if self.owns else info


# --------------------------------------------------------------------------- source


class RebalanceHooks:
    """What the owner of a :class:`KafkaSource` does on a rebalance (override what you need).

    Hooks run on kafka-python's IO thread while :meth:`KafkaSource.fill` waits;
    they may seek and checkpoint (commits are sent when the hook returns) but
    must not call blocking consumer methods.
    """

    def on_revoked(self, partitions: set[Any]) -> None:
        """Partitions about to go to the rebalance: checkpoint their state now."""

    def on_lost(self, partitions: set[Any]) -> None:
        """Partitions this member lost without a rebalance (evicted): drop their state, write nothing."""

    def on_assigned(self, partitions: set[Any]) -> None:
        """Partitions now owned: load their state and seek (``KafkaSource.seek``)."""


class KafkaSource(Source):
    """A consumer-group member reading one topic, committing only when told to.

    After ``quiet_seconds`` without records it checks (every ``quiet_seconds``,
    backing off during an outage) that the broker still answers.

    Parameters
    ----------
    config
        The ``[kafka]`` table (``KafkaConfig``).
    hooks
        Rebalance hooks of the owner (the daemon).
    exclusive
        One member owns every partition (``scope = "global"``): a member that joins
        while another consumes the group gets nothing and learns who owns it
        (:attr:`owner_conflict`).
    stop
        Set to interrupt waits for the broker.
    consumer_options
        Extra kafka-python consumer arguments (override the defaults).
    """

    quiet_seconds = 5.0
    #: What the client raises when the broker refuses or does not answer.
    client_errors: tuple[type[BaseException], ...] = (errors.KafkaError,)

    def __init__(
        self,
        config: Any,
        *,
        hooks: RebalanceHooks | None = None,
        exclusive: bool = False,
        stop: threading.Event | None = None,
        consumer_options: dict[str, Any] | None = None,
    ):
        self.config = config
        self.topic = config.topic
        self.hooks = hooks or RebalanceHooks()
        self.exclusive = exclusive
        self.assignor = SingleOwnerAssignor() if exclusive else None
        self.stop = stop or threading.Event()
        self.consumer_options = consumer_options or {}
        self.consumer: Any = None
        #: Partitions currently owned.
        self.assigned: set[Any] = set()
        #: Next offset to hand out, per owned partition (None: to be resolved).
        self._next: dict[Any, int | None] = {}
        #: Positions to start from when a partition is (re)assigned (from a checkpoint).
        self._wanted: dict[Any, int] = {}
        #: The record just before ``_next`` (or ``_wanted``), per partition: a Record, or a
        #: fingerprint from a checkpoint (``record_fingerprint``).
        self._last: dict[Any, Record | dict[str, Any]] = {}
        #: Fingerprints the first record fetched must match (the partition starts one record early).
        self._verify: dict[Any, dict[str, Any]] = {}
        self._chunks: collections.deque = collections.deque()
        self._views: dict[Any, PartitionSource] = {}
        self._in_hook = False
        self._deferred_commits: dict[Any, Any] = {}
        self._hook_error: BaseException | None = None
        self._last_data = time.monotonic()
        self._outage: Backoff | None = None
        self._next_probe = 0.0

    # ------------------------------------------------------------------ connecting

    def open(self) -> KafkaSource:
        """Connect (retrying with backoff), wait for the topic, join the group."""
        cfg = self.config
        backoff = Backoff(f"cannot reach the Kafka broker at {cfg.bootstrap_servers}", cfg.connect_timeout_seconds, self.stop)
        options = {
            **client_settings(cfg),
            "group_id": cfg.group_id,
            "enable_auto_commit": False,
            # Every assigned partition is positioned explicitly (checkpoint or policy).
            "auto_offset_reset": "none",
            "max_poll_records": cfg.max_poll_records,
            "session_timeout_ms": cfg.session_timeout_ms,
            "heartbeat_interval_ms": max(100, cfg.session_timeout_ms // 3),
            "bootstrap_timeout_ms": 3000,
            "reconnect_backoff_max_ms": 5000,
            **self.consumer_options,
        }
        if self.assignor is not None:
            options["partition_assignment_strategy"] = [self.assignor]
        self.consumer = retry_call(lambda: KafkaConsumer(**options), backoff)
        log.info("connected to Kafka", bootstrap_servers=cfg.bootstrap_servers, group_id=cfg.group_id)
        backoff.what = f"topic {self.topic!r} does not exist (yet) on {cfg.bootstrap_servers}"
        while not retry_call(lambda: self.consumer.partitions_for_topic(self.topic), backoff):
            backoff.wait("no partitions")
        self.consumer.subscribe([self.topic], listener=self._listener())
        return self

    def _listener(self) -> Any:
        source = self

        class Listener(AsyncConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked: set[Any]) -> None:
                source._run_hook(source.hooks.on_revoked, revoked)
                source._release(revoked)
                offsets, source._deferred_commits = source._deferred_commits, {}
                if offsets:
                    try:
                        await source.consumer.commit_async({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
                    except errors.KafkaError as exc:
                        # Only lag monitoring depends on it; the checkpoint is durable.
                        log.warning("commit before rebalance failed", error=str(exc))

            async def on_partitions_lost(self, lost: set[Any]) -> None:
                source._run_hook(source.hooks.on_lost, lost)
                source._release(lost, keep_positions=False)

            async def on_partitions_assigned(self, assigned: set[Any]) -> None:
                source.assigned |= set(assigned)
                for tp in assigned:
                    source._next.setdefault(tp, None)
                source._run_hook(source.hooks.on_assigned, assigned)
                source._run_hook(source._position_assigned, assigned)

        return Listener()

    def _run_hook(self, hook: Callable[[set[Any]], None], partitions: set[Any]) -> None:
        if self._hook_error is not None:
            return
        self._in_hook = True
        try:
            hook(set(partitions))
        except BaseException as exc:  # re-raised by fill(), in the caller's thread
            self._hook_error = exc
        finally:
            self._in_hook = False

    def _release(self, partitions: set[Any], keep_positions: bool = True) -> None:
        for tp in partitions:
            nxt = self._next.pop(tp, None)
            self._verify.pop(tp, None)
            if not keep_positions:
                self._wanted.pop(tp, None)
                self._last.pop(tp, None)
            elif nxt is not None:
                self._wanted[tp] = nxt
            self.assigned.discard(tp)
        self._chunks = collections.deque(c for c in self._chunks if c[0] not in partitions)

    def _position_assigned(self, partitions: set[Any]) -> None:
        """Start every newly assigned partition at its stored position, or by the policy."""
        policy = self.config.offset_reset
        for tp in sorted(partitions):
            offset = self._wanted.get(tp)
            if offset is not None:
                self._seek_stored(tp, offset)
                self._next[tp] = offset
                continue
            if policy == "fail":
                raise OffsetPolicyError(
                    f"no checkpoint holds a position for {partition_key(tp.topic, tp.partition)} and "
                    "kafka.offset_reset = 'fail'; start once with offset_reset = 'earliest' or 'latest'"
                )
            log.info("no stored position; starting by policy", partition=partition_key(tp.topic, tp.partition), offset_reset=policy)
            self._next[tp] = self._seek_by_policy(tp, policy)

    # ------------------------------------------------------------------ reading

    def fill(self, timeout_ms: int | None = None) -> int:
        """Poll once and buffer what arrives (per partition view, or here); returns the count.

        Runs rebalance hooks, resolves start positions, applies ``offset_reset``
        to positions that no longer exist, and watches the connection.
        """
        timeout = self.config.poll_timeout_ms if timeout_ms is None else timeout_ms
        try:
            batch = self._poll(timeout)
        except BaseException:
            self._raise_hook_error()  # a hook that failed left partitions unpositioned: its error is the news
            raise
        self._raise_hook_error()
        if self._verify:
            batch = self._check_fingerprints(batch)
        n = 0
        views, chunks, assigned = self._views, self._chunks, self.assigned
        for tp, records in batch:
            if tp not in assigned:  # abandoned (fenced out) while the client still fetches it
                continue
            view = views.get(tp)
            (view._chunks if view is not None else chunks).append((tp, records))
            n += len(records)
        self._resolve_positions()
        self._check_ranges()
        self._watch_connection(n)
        return n

    # The client's part: kafka-python here, librdkafka in ``kafka_confluent.ConfluentSource``.

    def _poll(self, timeout_ms: int) -> list[tuple[Any, list[Record]]]:
        """Records that arrived, as ``(partition, records)`` in offset order; runs rebalance hooks."""
        try:
            batch = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.config.max_poll_records)
        except errors.OffsetOutOfRangeError as exc:
            stored = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
            self._raise_hook_error()
            self._out_of_range({tp: (offset, None) for tp, offset in stored.items()})
            return []
        out = []
        for tp, records in batch.items():
            if records:
                topic, partition = tp.topic, tp.partition
                out.append(
                    (tp, [Record(r.value, {"topic": topic, "partition": partition, "offset": r.offset}, None, r.key, r.timestamp) for r in records])
                )
        return out

    def _seek(self, tp: Any, offset: int) -> None:
        self.consumer.seek(tp, offset)

    def _seek_by_policy(self, tp: Any, policy: str) -> int | None:
        """Start ``tp`` at its earliest or latest offset; returns that offset when already known."""
        (self.consumer.seek_to_beginning if policy == "earliest" else self.consumer.seek_to_end)(tp)
        return None

    def _position(self, tp: Any) -> int | None:
        with contextlib.suppress(errors.KafkaError):
            return self.consumer.position(tp, timeout_ms=2000)
        return None

    def _highwater(self, tp: Any) -> int | None:
        """The end of the log as the last fetch response told it (None: not known)."""
        return self.consumer.highwater(tp)

    def _commit(self, offsets: dict[Any, int]) -> None:
        """Commit group offsets now (blocking); raises the client's error."""
        self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}, timeout_ms=10_000)

    def _probe(self) -> str | None:
        """Ask the broker something small (bounded): the error when it does not answer, else None."""
        try:
            self.consumer.beginning_offsets([TopicPartition(self.topic, 0)], timeout_ms=2000)
        except (errors.KafkaTimeoutError, errors.KafkaConnectionError, errors.NodeNotReadyError, errors.RequestTimedOutError) as exc:
            return str(exc) or type(exc).__name__
        except errors.KafkaError as exc:  # reachable, but the topic is in trouble (deleted?)
            log.warning("the broker answers but the topic does not", topic=self.topic, error=str(exc) or type(exc).__name__)
        return None

    @property
    def owner_conflict(self) -> dict[str, Any] | None:
        """With ``exclusive``: who owns the group's partitions when another member does, else None."""
        return self.assignor.owner if self.assignor is not None else None

    # ------------------------------------------------------------------ bookkeeping shared by both clients

    def _raise_hook_error(self) -> None:
        if self._hook_error is not None:
            error, self._hook_error = self._hook_error, None
            raise error

    def _resolve_positions(self) -> None:
        """Positions chosen by policy become known offsets (so checkpoints pin them)."""
        for tp, offset in self._next.items():
            if offset is None and tp in self.assigned:
                self._next[tp] = self._position(tp)

    def _check_ranges(self) -> None:
        """A position beyond the high watermark means the log lost records (deleted/recreated topic)."""
        gone = {}
        for tp in self.assigned:
            offset = self._next.get(tp)
            if offset is None:
                continue
            highwater = self._highwater(tp)
            if highwater is not None and offset > highwater:
                gone[tp] = (offset, highwater)
        if gone:
            self._out_of_range(gone)

    def _out_of_range(self, partitions: dict[Any, tuple[int, int | None]]) -> None:
        for tp, (offset, highwater) in sorted(partitions.items()):
            key = partition_key(tp.topic, tp.partition)
            stored = self._next.get(tp)
            if highwater is None and self._verify.pop(tp, None) is not None and stored is not None:
                # The record before the stored offset is gone (retention), not necessarily the offset itself.
                log.warning("cannot verify the stored position: the record before it no longer exists", partition=key, offset=stored)
                self._seek(tp, stored)
                continue
            where = f" (the log now ends at {highwater})" if highwater is not None else ""
            self._reset(tp, f"stored offset {offset} of {key} no longer exists{where}: the topic was deleted, recreated or truncated")
        self._resolve_positions()

    def _reset(self, tp: Any, message: str) -> None:
        """A stored position that cannot be used: ``offset_reset`` decides, with ``message`` logged as an error."""
        policy = self.config.offset_reset
        if policy == "fail":
            raise OffsetPolicyError(f"{message}; kafka.offset_reset = 'fail'")
        log.error(f"{message}; offset_reset = {policy!r}: continuing from the {policy} offset", partition=partition_key(tp.topic, tp.partition))
        self._next[tp] = self._seek_by_policy(tp, policy)
        self._wanted.pop(tp, None)
        self._last.pop(tp, None)
        self._verify.pop(tp, None)
        self._chunks = collections.deque(c for c in self._chunks if c[0] != tp)
        view = self._views.get(tp)
        if view is not None:
            view._chunks.clear()

    def _seek_stored(self, tp: Any, offset: int) -> None:
        """Seek to a stored offset; one record early when the record before it is known, to check it is the same."""
        last = self._last.get(tp)
        expected = record_fingerprint(last) if isinstance(last, Record) else last
        if expected is not None and expected["offset"] == offset - 1:
            self._verify[tp] = expected
            self._seek(tp, offset - 1)
        else:
            self._verify.pop(tp, None)
            self._seek(tp, offset)

    def _check_fingerprints(self, batch: list[tuple[Any, list[Record]]]) -> list[tuple[Any, list[Record]]]:
        """The first records of restored partitions: the same as the checkpoint saw (then dropped), or a reset."""
        out = []
        for tp, records in batch:
            expected = self._verify.pop(tp, None)
            if expected is not None:
                key = partition_key(tp.topic, tp.partition)
                stored = expected["offset"] + 1
                found = record_fingerprint(records[0])
                if found["offset"] != expected["offset"]:
                    log.warning("cannot verify the stored position: the record before it no longer exists (compacted)", partition=key, offset=stored)
                elif found != expected:
                    self._reset(
                        tp,
                        f"the record before stored offset {stored} of {key} is not the one the checkpoint saw there "
                        f"(timestamp {found['timestamp']}, BLAKE2b {found['blake2b'][:12]}…; stored: timestamp "
                        f"{expected['timestamp']}, BLAKE2b {str(expected['blake2b'])[:12]}…): the topic was deleted and "
                        "recreated (or rewritten), and the stored offset belongs to the old log",
                    )
                    continue
                records = [r for r in records if r.position["offset"] >= stored]
                if not records:
                    continue
            out.append((tp, records))
        return out

    def _watch_connection(self, n: int) -> None:
        """After a quiet spell, ask the broker something small (bounded): logs outages and recoveries."""
        now = time.monotonic()
        if n:
            self._last_data = now
            if self._outage is not None:
                log.info("Kafka broker reachable again", down_for_s=round(self._outage.waited, 1))
                self._outage = None
        if now - self._last_data < self.quiet_seconds or now < self._next_probe:
            return
        error = self._probe()
        if error is not None:
            if self._outage is None:
                self._outage = Backoff(
                    f"lost the Kafka broker at {self.config.bootstrap_servers}", self.config.connect_timeout_seconds, self.stop
                )
            outage = self._outage
            outage.attempts += 1
            if outage.timeout and outage.waited >= outage.timeout:
                raise BrokerUnavailable(f"{outage.what}; still unreachable after {outage.waited:.0f} s ({error})")
            delay = min(outage.maximum, outage.initial * 2 ** (outage.attempts - 1))
            log.warning(f"{outage.what}; reconnecting", error=error, down_for_s=round(outage.waited, 1), next_check_in_s=delay)
            self._next_probe = now + delay
            return
        if self._outage is not None:
            log.info("Kafka broker reachable again", down_for_s=round(self._outage.waited, 1))
            self._outage = None
        self._next_probe = now + self.quiet_seconds

    @property
    def connected(self) -> bool:
        """False while an outage is being reported."""
        return self._outage is None

    def buffered(self) -> int:
        return sum(len(c[1]) for c in self._chunks)

    def read_batch(self, max_records: int) -> list[Record]:
        if not self._chunks:
            self.fill()
        return _take(self._chunks, self, max_records)

    # ------------------------------------------------------------------ positions

    def positions(self) -> dict[str, dict[str, Any]]:
        return {
            partition_key(tp.topic, tp.partition): {"topic": tp.topic, "partition": tp.partition, "offset": offset}
            for tp, offset in sorted(self._next.items())
            if offset is not None and tp in self.assigned
        }

    def fingerprints(self) -> dict[str, dict[str, Any]]:
        """The last record taken before each position (:func:`record_fingerprint`), keyed like :meth:`positions`."""
        out = {}
        for tp, offset in sorted(self._next.items()):
            last = self._last.get(tp)
            if offset is None or last is None or tp not in self.assigned:
                continue
            if isinstance(last, Record):
                last = self._last[tp] = record_fingerprint(last)
            if last["offset"] == offset - 1:
                out[partition_key(tp.topic, tp.partition)] = last
        return out

    def expect(self, fingerprints: dict[str, Any]) -> None:
        """Fingerprints from a checkpoint: a partition then resumed is checked against them."""
        for key, stored in fingerprints.items():
            fingerprint = _fingerprint_from(stored)
            topic, _, partition = str(key).rpartition("/")
            if fingerprint is None or topic != self.topic or not partition.isdigit():
                log.warning("ignoring a malformed record fingerprint in the checkpoint", partition=key)
                continue
            self._last[TopicPartition(topic, int(partition))] = fingerprint

    def seek(self, positions: dict[str, dict[str, Any]]) -> None:
        """Start the given partitions at the stored offsets (now if owned, else when assigned)."""
        for key, pos in positions.items():
            try:
                tp = TopicPartition(str(pos["topic"]), int(pos["partition"]))
                offset = int(pos["offset"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"checkpoint position {key!r} is not a Kafka position: {pos!r}") from None
            if tp.topic != self.topic:
                raise ValueError(
                    f"the checkpoint holds positions of topic {tp.topic!r}, this daemon reads {self.topic!r}: "
                    "use another checkpoint directory"
                )
            self._wanted[tp] = offset
            if tp in self.assigned:
                self._seek_stored(tp, offset)
                self._next[tp] = offset
                self._chunks = collections.deque(c for c in self._chunks if c[0] != tp)

    def forget(self, partitions: Iterable[Any]) -> None:
        """Drop stored start positions (a partition whose checkpoint store is empty starts by policy)."""
        for tp in partitions:
            self._wanted.pop(tp, None)
            self._last.pop(tp, None)

    def commit(self, positions: dict[str, dict[str, Any]]) -> None:
        """Commit group offsets (after a durable checkpoint); only owned partitions."""
        offsets = {}
        for pos in positions.values():
            tp = TopicPartition(pos["topic"], int(pos["partition"]))
            if tp in self.assigned:
                offsets[tp] = int(pos["offset"])
        if not offsets:
            return
        if self._in_hook:
            self._deferred_commits.update(offsets)
            return
        try:
            self._commit(offsets)
        except self.client_errors as exc:
            # The checkpoint is durable; the committed offsets only serve lag tools.
            log.warning("offset commit failed (lag tools will show older offsets)", error=str(exc) or type(exc).__name__)

    def lag(self) -> dict[str, int]:
        """High watermark minus the next offset to process, per owned partition (where known)."""
        out = {}
        for tp, offset in self._next.items():
            if offset is None or tp not in self.assigned:
                continue
            highwater = self._highwater(tp)
            if highwater is not None:
                out[partition_key(tp.topic, tp.partition)] = max(0, highwater - offset)
        return out

    # ------------------------------------------------------------------ views, closing

    def view(self, tp: Any, reuse: PartitionSource | None = None) -> PartitionSource:
        """A source over one owned partition, fed by :meth:`fill` (one learner per partition).

        ``reuse`` re-attaches the view of a learner kept across a rebalance.
        """
        view = self._views.get(tp)
        if view is None:
            view = self._views[tp] = reuse if reuse is not None else PartitionSource(self, tp)
        # Records polled before the view existed belong to it.
        mine = [c for c in self._chunks if c[0] == tp]
        if mine:
            self._chunks = collections.deque(c for c in self._chunks if c[0] != tp)
            view._chunks.extend(mine)
        return view

    def drop_view(self, tp: Any) -> None:
        self._views.pop(tp, None)

    def abandon(self, partitions: set[Any]) -> None:
        """Stop handing out records of ``partitions`` (fenced out) until the group assigns them again."""
        self._release(partitions, keep_positions=False)

    def close(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            with contextlib.suppress(Exception):
                consumer.close(autocommit=False, timeout_ms=5000)


def _take(chunks: collections.deque, source: KafkaSource, max_records: int) -> list[Record]:
    out: list[Record] = []
    nxt, last = source._next, source._last
    while chunks and len(out) < max_records:
        tp, records = chunks[0]
        want = max_records - len(out)
        if len(records) <= want:
            chunks.popleft()
            taken = records
        else:
            taken, chunks[0] = records[:want], (tp, records[want:])
        out.extend(taken)
        nxt[tp] = taken[-1].position["offset"] + 1
        last[tp] = taken[-1]  # fingerprinted only when a checkpoint asks
    return out


class PartitionSource(Source):
    """One partition of a :class:`KafkaSource` as a source of its own (``scope = "partition"``)."""

    def __init__(self, parent: KafkaSource, tp: Any):
        self.parent = parent
        self.tp = tp
        self.key = partition_key(tp.topic, tp.partition)
        self._chunks: collections.deque = collections.deque()

    def buffered(self) -> int:
        return sum(len(c[1]) for c in self._chunks)

    def read_batch(self, max_records: int) -> list[Record]:
        return _take(self._chunks, self.parent, max_records)

    def positions(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.parent.positions().items() if k == self.key}

    def fingerprints(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.parent.fingerprints().items() if k == self.key}

    def expect(self, fingerprints: dict[str, Any]) -> None:
        self.parent.expect({k: v for k, v in fingerprints.items() if k == self.key})

    def seek(self, positions: dict[str, dict[str, Any]]) -> None:
        if not positions:
            return
        if self.key not in positions:
            raise ValueError(
                f"the checkpoint holds positions for {sorted(positions)}, not for {self.key!r}: "
                "each partition needs its own checkpoint directory"
            )
        self._chunks.clear()
        self.parent.seek({self.key: positions[self.key]})

    def commit(self, positions: dict[str, dict[str, Any]]) -> None:
        self.parent.commit(positions)


# --------------------------------------------------------------------------- sink


def encode_value(record: dict[str, Any]) -> bytes:
    """A record as the JSON value of a message (non-finite numbers → null, non-string keys → strings)."""
    return orjson.dumps(record, default=_json_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def open_sinks(config: Any, topics: dict[str, str], stop: threading.Event, producer_options: dict[str, Any] | None = None) -> tuple[dict[str, Sink], Callable[[], None]]:
    """One :class:`KafkaSink` per ``{name: topic}`` on a shared producer, and the producer's ``close``."""
    backoff = Backoff(f"cannot reach the Kafka broker at {config.bootstrap_servers}", config.connect_timeout_seconds, stop)
    settings = client_settings(config)
    ensure_topics(settings, list(topics.values()), backoff)
    options = {
        **settings,
        "acks": "all",
        # Outputs are at-least-once and carry their source position; an idempotent
        # producer would add a producer-id handshake that can fail after a broker restart.
        "enable_idempotence": False,
        # Large batches that fill for a while halve kafka-python's cost per record
        # (~25 µs a send at best); flush() before a checkpoint sends what lingers.
        "linger_ms": 20,
        "batch_size": 1 << 20,
        "max_block_ms": 10_000,
        "bootstrap_timeout_ms": 3000,
        **(producer_options or {}),
    }
    producer = retry_call(lambda: KafkaProducer(**options), backoff)
    sinks = {name: KafkaSink(producer, topic, timeout=config.connect_timeout_seconds, stop=stop) for name, topic in topics.items()}
    return sinks, lambda: producer.close(timeout=5)


class KafkaSink(Sink):
    """JSON records to a topic; ``flush`` returns once the broker acknowledged all of them.

    Records that fail (broker gone, timeouts) are re-sent with backoff until they
    are acknowledged, or until ``timeout`` seconds of failing (0: forever) raise
    :class:`BrokerUnavailable` — the checkpoint is then not written, so nothing is
    lost: the restarted daemon redoes the events after the previous checkpoint.

    Parameters
    ----------
    producer
        A ``kafka.KafkaProducer`` (shared by several sinks).
    topic
        Destination topic.
    timeout
        Seconds of failed delivery before giving up (0: retry forever).
    stop
        Set to interrupt the backoff waits.
    """

    def __init__(self, producer: Any, topic: str, *, timeout: float = 0.0, stop: threading.Event | None = None):
        self.producer = producer
        self.topic = topic
        self.timeout = timeout
        self.stop = stop
        self.written = 0
        self._inflight: list[tuple[Any, bytes]] = []

    def write(self, records: list[dict[str, Any]]) -> None:
        send, topic, inflight = self.producer.send, self.topic, self._inflight
        for record in records:
            value = encode_value(record)
            inflight.append((self._send(send, topic, value), value))
        self.written += len(records)

    @staticmethod
    def _send(send: Callable, topic: str, value: bytes) -> Any:
        try:
            return send(topic, value)
        except errors.KafkaTimeoutError as exc:  # no metadata / buffer full: re-sent by flush
            return exc

    def flush(self) -> None:
        backoff = None
        while self._inflight:
            with contextlib.suppress(errors.KafkaTimeoutError):
                self.producer.flush(timeout=30)
            failed, error = [], None
            for future, value in self._inflight:
                if isinstance(future, Exception) or not future.is_done or future.failed():
                    failed.append(value)
                    error = future if isinstance(future, Exception) else getattr(future, "exception", None)
            if not failed:
                self._inflight = []
                return
            if backoff is None:
                backoff = Backoff(f"cannot deliver records to topic {self.topic!r}", self.timeout, self.stop)
            try:
                backoff.wait(f"{len(failed)} unacknowledged: {error}")
            except Stopped:
                raise BrokerUnavailable(f"stopped while {len(failed)} records to {self.topic!r} were undelivered") from None
            send, topic = self.producer.send, self.topic
            self._inflight = [(self._send(send, topic, value), value) for value in failed]
