"""Configs are trusted code, and their secrets are never echoed (issue 14, finding 9)."""

from __future__ import annotations

import json
import urllib.request

import hypothesis.strategies as st
import pytest
import structlog
from hypothesis import given, settings

from streamlearn.engine.broker import free_port
from streamlearn.engine.checkpoint import CheckpointStore, read_checkpoint
from streamlearn.engine.config import ConfigError, parse_config
from streamlearn.engine.report import write_report
from streamlearn.logs import configure_logging
from streamlearn.redact import REDACTED, is_secret_key, redact
from tests.conftest import run_cli, write_jsonl
from tests.kafka_fixtures import RunningDaemon, wait_for, write_config
from tests.poison_learners import HalfUpdate

SECRET = "hunter2-do-not-echo"


class TokenLearner(HalfUpdate):
    """A learner of your own that takes a credential (as one calling an API would)."""

    def __init__(self, seed: int = 0, api_token: str = "", tokenizer: str = "words"):
        super().__init__(seed)
        self.api_token, self.tokenizer = api_token, tokenizer

    def _get_params(self) -> dict:
        return {"seed": self.seed, "api_token": self.api_token, "tokenizer": self.tokenizer}


@pytest.mark.parametrize(
    "key",
    [
        "sasl_password", "sasl.password", "ssl.key.password", "ssl_keystore_password", "ssl.keystore.password",
        "ssl_key", "ssl.key.pem", "ssl_keystore", "client_secret", "sasl.oauthbearer.client.secret",
        "access_token", "token", "sasl.jaas.config", "api_key", "AWS_SECRET_ACCESS_KEY", "apiKey-Token",
    ],
)
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    ["sasl_username", "ssl_keyfile", "ssl.key.location", "ssl_cafile", "ssl_certfile", "ssl.keystore.location",
     "tokenizer", "max_tokens", "topic", "bootstrap_servers", "keep", 3],
)
def test_settings_that_are_not_secrets(key):
    assert not is_secret_key(key)


def test_redact_nested_dotted_and_uri_passwords():
    config = {
        "kafka": {"sasl_password": SECRET, "sasl_username": "alice", "sasl_mechanism": None},
        "learner": {"params": {"client": {"sasl.password": SECRET, "ssl.key.pem": SECRET, "retries": 3}}},
        "checkpoint": {"dir": f"s3://AKIA:{SECRET}@bucket/prefix"},
        "list": [{"token": SECRET}, ("x", f"https://u:{SECRET}@host/")],
    }
    out = redact(config)
    assert SECRET not in json.dumps(out)
    assert out["kafka"] == {"sasl_password": REDACTED, "sasl_username": "alice", "sasl_mechanism": None}
    assert out["learner"]["params"]["client"] == {"sasl.password": REDACTED, "ssl.key.pem": REDACTED, "retries": 3}
    assert out["checkpoint"]["dir"] == f"s3://AKIA:{REDACTED}@bucket/prefix"
    assert out["list"] == [{"token": REDACTED}, ("x", f"https://u:{REDACTED}@host/")]
    assert config["kafka"]["sasl_password"] == SECRET  # a copy: the config itself still works


_SECRET_KEYS = st.sampled_from(["sasl_password", "sasl.password", "ssl.key.pem", "client_secret", "access_token", "Api-Key"])
_PLAIN_KEYS = st.sampled_from(["topic", "tokenizer", "ssl_keyfile", "name", "n"])
_trees = st.recursive(
    st.none() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(_PLAIN_KEYS, inner, max_size=3)
    | st.dictionaries(_SECRET_KEYS, st.just(SECRET) | st.lists(st.just(SECRET), max_size=2) | st.dictionaries(_PLAIN_KEYS, st.just(SECRET)), max_size=2),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_trees)
def test_no_secret_survives_redaction_at_any_depth(tree):
    assert SECRET not in json.dumps(redact(tree))


def test_config_repr_holds_no_secret():
    config = parse_config({"learner": {"name": "river"}, "kafka": {"sasl_password": SECRET}}, env={})
    assert config.kafka.sasl_password == SECRET and SECRET not in repr(config)


def test_report_json_never_holds_a_secret(tmp_path):
    # The demo's report goes through write_report too.
    raw = {"kafka": {"sasl_password": SECRET}, "checkpoint": {"dir": f"s3://k:{SECRET}@b/p"}}
    path = write_report({"learner": "x", "config": raw, "input": f"s3://k:{SECRET}@b/in.jsonl", "history": []}, tmp_path)
    text = path.read_text()
    assert SECRET not in text and REDACTED in text


def test_replay_report_logs_checkpoint_and_show_redact_secrets(tmp_path):
    """The CLI end to end: report.json, JSON logs, checkpoint metadata and `checkpoints show`."""
    events = write_jsonl(tmp_path / "e.jsonl", [{"x": {"a": float(i)}, "y": 0.0} for i in range(50)])
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[learner]
name = "tests.test_redact:TokenLearner"
processor = "supervised"
params = {{api_token = "{SECRET}", tokenizer = "words"}}
[checkpoint]
dir = "{(tmp_path / 'ckpt').as_posix()}"
[kafka]
sasl_password = "{SECRET}"
"""
    )
    result = run_cli("--log-json", "replay", str(config), "--input", str(events), "--report", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "r" / "report.json").read_text()
    assert SECRET not in report
    assert json.loads(report)["config"]["kafka"]["sasl_password"] == REDACTED
    assert SECRET not in result.stdout + result.stderr
    info = CheckpointStore(tmp_path / "ckpt").list()[-1]
    params = read_checkpoint(str(tmp_path / "ckpt" / info.file)).metadata["learner"]["params"]
    assert params == {"api_token": REDACTED, "tokenizer": "words"}  # the config's params
    shown = run_cli("checkpoints", "show", str(tmp_path / "ckpt" / info.file))
    assert shown.returncode == 0 and SECRET not in shown.stdout and REDACTED in shown.stdout


def test_every_log_line_is_redacted(capsys):
    configure_logging("info", json_logs=True)
    try:
        structlog.get_logger("t").info("connecting", sasl_password=SECRET, location=f"s3://k:{SECRET}@b/p", topic="events")
    finally:
        structlog.reset_defaults()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["sasl_password"] == REDACTED and line["location"] == f"s3://k:{REDACTED}@b/p" and line["topic"] == "events"


def test_a_config_error_does_not_echo_a_secret():
    with pytest.raises(ConfigError, match="kafka.sasl_password must be a string") as caught:
        parse_config({"learner": {"name": "river"}, "kafka": {"sasl_password": 12345678}}, env={})
    assert "12345678" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("os:system", "not a class"),
        ("builtins:print", "not a class"),
        ("os:path", "not a class"),
        ("subprocess:Popen", "has no learn_one, predict_one, state_dict, load_state_dict"),
        ("builtins:dict", "has no learn_one, predict_one, state_dict"),
    ],
)
def test_a_learner_name_must_be_a_learner_class(name, why):
    with pytest.raises(ConfigError, match=f"learner.name: .*{why}"):
        parse_config({"learner": {"name": name, "processor": "supervised", "params": {"command": "true"}}}, env={})


def test_os_system_in_a_config_runs_nothing_and_exits_2(tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "c.toml"
    config.write_text(f'[learner]\nname = "os:system"\nprocessor = "supervised"\nparams = {{command = "touch {marker}"}}\n')
    events = write_jsonl(tmp_path / "e.jsonl", [{"x": {"a": 1.0}, "y": 0.0}])
    result = run_cli("replay", str(config), "--input", str(events))
    assert result.returncode == 2
    assert "'os:system' is a builtin_function_or_method, not a class" in result.stderr
    assert not marker.exists()


@pytest.mark.kafka
def test_daemon_metrics_and_logs_hold_no_secret(tmp_path, broker, capsys):
    topic = broker.topic()
    n = broker.produce(topic, [{"x": {"a": float(i)}, "y": i % 2 == 0} for i in range(100)])
    path = write_config(tmp_path / "d.toml", broker, topic)
    path.write_text(path.read_text() + f'sasl_password = "{SECRET}"\nsasl_username = "alice"\n')
    port = free_port()
    configure_logging("info", json_logs=True)
    try:
        daemon = RunningDaemon(path, metrics_port=port)
        try:
            daemon.wait_events(n)
            text = wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode(), what="a scrape")
        finally:
            daemon.stop()
    finally:
        structlog.reset_defaults()
    logs = capsys.readouterr().err
    assert "streamlearn_events_total" in text and SECRET not in text
    assert "daemon running" in logs and SECRET not in logs
    info = CheckpointStore(tmp_path / "d-checkpoints").list()[-1]
    metadata = read_checkpoint(str(tmp_path / "d-checkpoints" / info.file)).metadata
    assert SECRET not in json.dumps(metadata)
