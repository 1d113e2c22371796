"""TOML configuration, validated on load.

A config names a learner and says where events come from and where outputs,
dead letters and checkpoints go. Every table and key is checked: an unknown key,
a value of the wrong type, an unknown learner or a learner parameter it does not
take raises :class:`ConfigError` with a message naming the key (the CLI prints it
and exits with code 2).

Relative paths are relative to the current directory. Environment variables
override connection settings so secrets stay out of files:
``STREAMLEARN_KAFKA_<KEY>`` (e.g. ``STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS``,
``STREAMLEARN_KAFKA_SASL_PASSWORD``) replaces ``[kafka] <key>``.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from streamlearn.engine import registry
from streamlearn.engine.checkpoint import MAX_BYTES
from streamlearn.engine.processor import DEFAULT_LIMITS, EvalOptions, InputLimits, MetricSet
from streamlearn.redact import REDACTED, is_secret_key

__all__ = [
    "CheckpointConfig",
    "Config",
    "ConfigError",
    "EngineConfig",
    "InputConfig",
    "KafkaConfig",
    "LearnerConfig",
    "OutputConfig",
    "load_config",
    "parse_config",
]


class ConfigError(ValueError):
    """A config that cannot be used; the message names the offending key."""


@dataclasses.dataclass
class LearnerConfig:
    #: A built-in learner name (see ``streamlearn.engine.registry``) or ``"package.module:Class"``.
    name: str
    #: Constructor arguments.
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Processor for a learner that is not built in.
    processor: str | None = None


@dataclasses.dataclass
class InputConfig:
    #: Logged stream to replay (``replay --input`` overrides it).
    path: str | None = None
    #: ``jsonl``, ``csv`` or ``parquet``; from the file name when unset.
    format: str | None = None
    #: For flat CSV/Parquet rows: the label column; the other columns become ``x``.
    target: str | None = None
    #: Columns left out of ``x``.
    exclude: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class OutputConfig:
    #: File (.jsonl/.parquet) receiving predictions, label requests or decisions.
    predictions: str | None = None
    #: File (.jsonl/.parquet) receiving bad events with the reason and position.
    dead_letters: str | None = None


@dataclasses.dataclass
class EngineConfig:
    #: Most records handed to the processor at once.
    batch_size: int = 256
    #: Events larger than this many bytes are dead letters.
    max_event_bytes: int = 1_048_576
    #: Features, numeric labels and rewards beyond this absolute value are dead letters (see docs/security.md).
    max_feature_abs: float = DEFAULT_LIMITS.max_feature_abs
    #: Events with more features (or list values) than this are dead letters.
    max_features: int = DEFAULT_LIMITS.max_features
    #: Distinct feature names a learner may come to know; events bringing more are dead letters (0: no cap).
    max_learner_features: int = DEFAULT_LIMITS.max_learner_features
    #: A record whose processing alone ended the process (a segfault, an out-of-memory kill) this
    #: many times is a dead letter on the next start, not processed again (0: off; needs checkpoint.dir).
    max_crashes: int = 2
    #: Seconds between progress log lines in long runs.
    log_every_seconds: float = 10.0


@dataclasses.dataclass
class CheckpointConfig:
    #: Directory or ``pyarrow.fs`` URI (``s3://bucket/prefix``); no checkpoints when unset.
    dir: str | None = None
    #: Checkpoint after this many events (0: never by count).
    every_events: int = 10_000
    #: Checkpoint after this many seconds (0: never by time).
    every_seconds: float = 60.0
    #: Checkpoints kept (older ones are deleted).
    keep: int = 5
    #: Largest checkpoint file read; a larger one is refused as corrupt (docs/security.md).
    max_bytes: int = MAX_BYTES


@dataclasses.dataclass
class KafkaConfig:
    bootstrap_servers: str = "localhost:9092"
    #: ``confluent-kafka`` (librdkafka), ``kafka-python`` (pure Python), or ``auto``: the
    #: first when it is installed.
    client: str = "auto"
    topic: str = "events"
    group_id: str = "streamlearn"
    #: Output topic for predictions / label requests / decisions ("" for none).
    output_topic: str = ""
    #: Dead-letter topic ("" to use ``[output] dead_letters`` or ``<topic>.dlq``).
    dead_letter_topic: str = ""
    #: ``global``: one learner for the topic; ``partition``: one learner per partition.
    scope: str = "global"
    #: Where to start without a checkpoint, and what to do when a stored offset is gone:
    #: ``earliest``, ``latest`` or ``fail``.
    offset_reset: str = "earliest"
    client_id: str = "streamlearn"
    poll_timeout_ms: int = 500
    max_poll_records: int = 500
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    #: Kept out of ``repr`` (a traceback or a debug print); echoed configs are redacted.
    sasl_password: str | None = dataclasses.field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    #: Seconds of retrying with backoff when the broker is unreachable (0: forever).
    connect_timeout_seconds: float = 0.0
    #: Consumer-group session timeout: a member silent this long is replaced (a
    #: daemon killed with SIGKILL hands its partitions over after it).
    session_timeout_ms: int = 10_000
    #: Port of the Prometheus endpoint (0: off).
    metrics_port: int = 0


@dataclasses.dataclass
class Config:
    learner: LearnerConfig
    input: InputConfig = dataclasses.field(default_factory=InputConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    eval: EvalOptions = dataclasses.field(default_factory=EvalOptions)
    processor: dict[str, Any] = dataclasses.field(default_factory=dict)
    engine: EngineConfig = dataclasses.field(default_factory=EngineConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    kafka: KafkaConfig = dataclasses.field(default_factory=KafkaConfig)
    #: Where the config came from (for reports).
    source: str | None = None
    #: The raw tables as loaded, secrets included: echo them only through ``streamlearn.redact.redact``.
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def build_learner(self) -> Any:
        return build_learner(self.learner)

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Engine`` from ``[engine]`` and ``[eval]``."""
        return {
            "batch_size": self.engine.batch_size,
            "max_event_bytes": self.engine.max_event_bytes,
            "limits": InputLimits(self.engine.max_feature_abs, self.engine.max_features, self.engine.max_learner_features),
            "history_every": self.eval.history_every,
            "log_every_seconds": self.engine.log_every_seconds,
            "max_crashes": self.engine.max_crashes,
        }

    def build_processor(self, learner: Any, emit: bool = True) -> Any:
        cls = registry.processor_class(self.learner.name, self.learner.processor)
        options = _from_table(cls.Options, self.processor, "processor")
        try:
            return cls(learner, self.eval, options, emit=emit)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.learner.name} processor: {exc}") from None


# --------------------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}s" if typing.get_args(tp) else "a list"
    if origin is dict or tp is dict:
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _fits(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return any(_fits(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is Any:
        return True
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _unknown_key(path: str, key: str, known: list[str]) -> ConfigError:
    hint = difflib.get_close_matches(key, known, n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(f"unknown key {path}.{key}{did_you_mean}; valid keys: {', '.join(known) or 'none'}")


def _from_table(cls: type, table: Any, path: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{path}] must be a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise _unknown_key(path, key, list(fields))
        tp = hints[key]
        if not _fits(value, tp):
            shown = REDACTED if is_secret_key(key) else repr(value)
            raise ConfigError(f"{path}.{key} must be {_type_name(tp)}, got {shown}")
        values[key] = float(value) if tp is float else value
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing key {path}.{missing[0]}")
    return cls(**values)


def build_learner(learner: LearnerConfig) -> Any:
    try:
        cls = registry.learner_class(learner.name)
    except registry.UnknownName as exc:
        raise ConfigError(f"learner.name: {exc}") from None
    signature = inspect.signature(cls)
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    accepted = [n for n, p in signature.parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if not takes_kwargs:
        for key in learner.params:
            if key not in accepted:
                raise _unknown_key("learner.params", key, accepted)
    try:
        return cls(**learner.params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"learner.params: {learner.name}: {exc}") from None


_SECTIONS: dict[str, type] = {
    "learner": LearnerConfig,
    "input": InputConfig,
    "output": OutputConfig,
    "eval": EvalOptions,
    "engine": EngineConfig,
    "checkpoint": CheckpointConfig,
    "kafka": KafkaConfig,
}


def _apply_env(table: dict[str, Any], env: typing.Mapping[str, str]) -> dict[str, Any]:
    table = dict(table)
    hints = typing.get_type_hints(KafkaConfig)
    for f in dataclasses.fields(KafkaConfig):
        value = env.get(f"STREAMLEARN_KAFKA_{f.name.upper()}")
        if value is None:
            continue
        tp = hints[f.name]
        try:
            table[f.name] = int(value) if tp is int else float(value) if tp is float else value
        except ValueError:
            raise ConfigError(f"STREAMLEARN_KAFKA_{f.name.upper()} must be {_type_name(tp)}, got {value!r}") from None
    return table


def parse_config(data: dict[str, Any], source: str | None = None, env: typing.Mapping[str, str] | None = None) -> Config:
    """Validate parsed TOML tables and return a :class:`Config`; builds nothing.

    A learner of your own (``"package.module:Class"``) is imported to check that it is
    a learner class; built-in learners are imported only when built.
    """
    env = os.environ if env is None else env
    known = [*_SECTIONS, "processor"]
    for key in data:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            did_you_mean = f" (did you mean [{hint[0]}]?)" if hint else ""
            raise ConfigError(f"unknown table [{key}]{did_you_mean}; valid tables: {', '.join(known)}")
    if "learner" not in data:
        raise ConfigError("missing table [learner] (with at least: name = \"...\")")
    sections = {name: _from_table(cls, data.get(name, {}), name) for name, cls in _SECTIONS.items() if name != "kafka"}
    sections["kafka"] = _from_table(KafkaConfig, _apply_env(data.get("kafka", {}), env), "kafka")
    processor = data.get("processor", {})
    if not isinstance(processor, dict):
        raise ConfigError("[processor] must be a table")
    config = Config(**sections, processor=processor, source=source, raw=data)
    _check_values(config)
    try:
        cls = registry.processor_class(config.learner.name, config.learner.processor)
    except registry.UnknownName as exc:
        raise ConfigError(f"learner: {exc}") from None
    _from_table(cls.Options, processor, "processor")
    if config.learner.name not in registry.LEARNERS:
        # A learner of your own is imported and checked now, before anything runs.
        try:
            registry.learner_class(config.learner.name)
        except registry.UnknownName as exc:
            raise ConfigError(f"learner.name: {exc}") from None
    return config


def _check_values(config: Config) -> None:
    if config.engine.batch_size < 1:
        raise ConfigError("engine.batch_size must be at least 1")
    if not config.engine.max_feature_abs > 0 or config.engine.max_feature_abs == float("inf"):
        raise ConfigError(f"engine.max_feature_abs must be a finite number above 0, got {config.engine.max_feature_abs}")
    if config.engine.max_features < 1:
        raise ConfigError("engine.max_features must be at least 1")
    if config.engine.max_learner_features < 0:
        raise ConfigError("engine.max_learner_features must be 0 (no cap) or more")
    if config.engine.max_crashes < 0:
        raise ConfigError("engine.max_crashes must be 0 (off) or more")
    if config.eval.label_delay < 0:
        raise ConfigError("eval.label_delay must be 0 or more")
    if config.eval.history_every < 1:
        raise ConfigError("eval.history_every must be at least 1")
    if config.eval.window < 0:
        raise ConfigError("eval.window must be 0 (off) or more")
    try:
        MetricSet(config.eval.metrics, config.eval.window)
    except ValueError as exc:
        raise ConfigError(f"eval.metrics: {exc}") from None
    if config.checkpoint.keep < 1:
        raise ConfigError("checkpoint.keep must be at least 1")
    if config.checkpoint.max_bytes < 1:
        raise ConfigError("checkpoint.max_bytes must be at least 1")
    if config.input.format not in (None, "jsonl", "csv", "parquet"):
        raise ConfigError(f"input.format must be jsonl, csv or parquet, got {config.input.format!r}")
    if config.kafka.client not in ("auto", "confluent-kafka", "kafka-python"):
        raise ConfigError(f"kafka.client must be auto, confluent-kafka or kafka-python, got {config.kafka.client!r}")
    if config.kafka.scope not in ("global", "partition"):
        raise ConfigError(f"kafka.scope must be 'global' or 'partition', got {config.kafka.scope!r}")
    if config.kafka.session_timeout_ms < 1000:
        raise ConfigError("kafka.session_timeout_ms must be at least 1000")
    if config.kafka.offset_reset not in ("earliest", "latest", "fail"):
        raise ConfigError(f"kafka.offset_reset must be earliest, latest or fail, got {config.kafka.offset_reset!r}")


def load_config(path: str | os.PathLike, env: typing.Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory; pass a TOML config file (such as configs/phishing.toml)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}): is it a TOML config?") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(data, source=str(path), env=env)
