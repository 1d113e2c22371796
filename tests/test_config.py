import pytest

from streamlearn.engine.config import ConfigError, load_config, parse_config
from tests.conftest import REPO, run_cli

GOOD = {"learner": {"name": "river", "params": {"model": "linear_model.LogisticRegression"}}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**GOOD, "engine": {"batchsize": 10}}, r"unknown key engine.batchsize \(did you mean 'batch_size'\?\)"),
        ({**GOOD, "engine": {"batch_size": "10"}}, r"engine.batch_size must be an integer, got '10'"),
        ({**GOOD, "checkpoint": {"keep": 1.5}}, r"checkpoint.keep must be an integer"),
        ({**GOOD, "eval": {"metrics": ["Acuracy"]}}, r"river.metrics has no metric 'Acuracy'"),
        ({**GOOD, "evaluation": {}}, r"unknown table \[evaluation\]"),
        ({"learner": {"name": "perceptron"}}, r"unknown learner 'perceptron'"),
        ({"engine": {}}, r"missing table \[learner\]"),
        ({"learner": {}}, r"missing key learner.name"),
        ({**GOOD, "kafka": {"scope": "cluster"}}, r"kafka.scope must be 'global' or 'partition'"),
        ({**GOOD, "kafka": {"client": "librdkafka"}}, r"kafka.client must be auto, confluent-kafka or kafka-python, got 'librdkafka'"),
        ({**GOOD, "processor": {"window": 3}}, r"unknown key processor.window"),
    ],
)
def test_bad_configs_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(data, env={})


def test_learner_params_are_checked_when_built():
    config = parse_config({"learner": {"name": "river", "params": {"modle": "x"}}}, env={})
    with pytest.raises(ConfigError, match=r"unknown key learner.params.modle \(did you mean 'model'\?\)"):
        config.build_learner()
    config = parse_config({"learner": {"name": "river", "params": {"model": "tree.HoeffdingTreeClasifier"}}}, env={})
    with pytest.raises(ConfigError, match="no such model in river: 'tree.HoeffdingTreeClasifier'; did you mean 'tree.HoeffdingTreeClassifier'"):
        config.build_learner()


def test_environment_overrides_connection_settings():
    config = parse_config(GOOD, env={"STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS": "k1:9093", "STREAMLEARN_KAFKA_METRICS_PORT": "9100"})
    assert config.kafka.bootstrap_servers == "k1:9093"
    assert config.kafka.metrics_port == 9100
    with pytest.raises(ConfigError, match="STREAMLEARN_KAFKA_METRICS_PORT must be an integer"):
        parse_config(GOOD, env={"STREAMLEARN_KAFKA_METRICS_PORT": "ninety"})


def test_every_shipped_config_is_valid():
    configs = sorted((REPO / "configs").glob("*.toml"))
    assert configs, "configs/ must hold at least one config"
    for path in configs:
        load_config(path, env={})


def test_cli_exits_2_with_the_key_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[learner]\nname = "river"\n[engine]\nbatch_sise = 3\n')
    data = tmp_path / "d.jsonl"
    data.write_text("")
    result = run_cli("replay", str(bad), "--input", str(data))
    assert result.returncode == 2
    assert "engine.batch_sise" in result.stderr
    result = run_cli("replay", str(tmp_path / "missing.toml"), "--input", str(data))
    assert result.returncode == 2 and "config file not found" in result.stderr
    bad.write_text("[learner\n")
    result = run_cli("replay", str(bad), "--input", str(data))
    assert result.returncode == 2 and "invalid TOML" in result.stderr


def test_kafka_client_auto_picks_librdkafka_when_installed(monkeypatch):
    import importlib.util

    from streamlearn.connectors.kafka import KafkaSource, client_for
    from streamlearn.connectors.kafka_confluent import ConfluentSource

    assert parse_config(GOOD, env={}).kafka.client == "auto"
    assert client_for("auto")[:2] == ("confluent-kafka", ConfluentSource)
    assert client_for("kafka-python")[:2] == ("kafka-python", KafkaSource)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "confluent_kafka" else real_find_spec(name))
    assert client_for("auto")[:2] == ("kafka-python", KafkaSource)  # a pure-Python install
