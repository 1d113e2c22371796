"""Every config in configs/ runs end to end on its ready stream: `streamlearn export`, then `streamlearn replay`.

Issue 15 finding 5: four of the learners had no input. Each config below gets a small
version of its ready stream (``export --size``), is replayed through the CLI in a
subprocess, and must exit 0 having learned every event with no dead letters.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from streamlearn.datasets import READY_STREAMS, export_dataset
from tests.conftest import REPO, run_cli

#: Configs that read a Kafka topic, not a stream on disk.
DAEMON_ONLY = {"kafka_demo.toml"}


def _check_phishing(report: dict) -> None:
    assert report["final_metrics"]["Accuracy"] > 0.6


def _check_active(report: dict) -> None:
    assert 0 < report["final_metrics"]["labels_learned"] <= 0.1 * report["events"] + 1


def _check_dictionary(report: dict) -> None:
    assert report["final_metrics"]["reconstruction_error"] < 0.5


def _check_groupwise(report: dict) -> None:
    assert report["final_metrics"]["MAE"] < 0.1
    assert {row["group"] for row in report["details"]["group_regret"]} >= {"circle", "green", "red"}


def _check_lame(report: dict) -> None:
    lame = report["details"]["lame"]
    assert lame["events_answered"] == report["events"]
    assert lame["accuracy_adapted"] > lame["accuracy_unadapted"]  # the class-grouped shifted stream is where LAME helps


def _check_bandit(report: dict) -> None:
    metrics = report["final_metrics"]
    assert metrics["decisions"] == report["events"] - 1  # every period but the environment event
    assert metrics["rewards"] == 4 * metrics["decisions"]  # k = 4 arms pulled and answered by the simulator
    assert 0.3 < metrics["bound_ratio"] <= 1.0
    assert report["details"]["evaluation"].startswith("simulated recovering-reward environment")


def _check_oer(report: dict) -> None:
    assert report["final_metrics"] == {"transitions": 60.0, "tasks_finished": 2.0, "actions": 10.0}


#: config → (ready stream, --size, what its report must show, parameter overrides that keep the test fast).
CASES = {
    "phishing.toml": ("phishing", 300, _check_phishing, {}),
    "torch_phishing.toml": ("phishing", 300, _check_phishing, {}),
    "active.toml": ("phishing", 300, _check_active, {}),
    "fw_dictionary.toml": ("shuttle", 2000, _check_dictionary, {}),
    "groupwise.toml": ("groups", 1000, _check_groupwise, {}),
    "lame.toml": ("segments-shift", 400, _check_lame, {}),
    "recovering_bandit.toml": ("recovering", 300, _check_bandit, {}),
    # OER trains 1,000 gradient steps per task end; 20 keep the test at seconds (its stream is unchanged).
    "oer.toml": ("pointmass", 30, _check_oer, {"steps_per_task": 20, "dynamics_steps": 20}),
}


def test_every_config_has_a_ready_stream_and_a_case_here():
    """A new config fails here until `streamlearn export` has a stream for it (and this test runs it)."""
    configs = {p.name for p in (REPO / "configs").glob("*.toml")} - DAEMON_ONLY
    fed = {config for stream in READY_STREAMS.values() for config in stream.configs}
    assert configs <= fed, f"configs without a ready stream in streamlearn.datasets.READY_STREAMS: {sorted(configs - fed)}"
    assert set(CASES) == configs
    assert all(config in READY_STREAMS[stream].configs for config, (stream, *_) in CASES.items())


def test_export_help_lists_every_ready_stream_and_its_configs():
    done = run_cli("export", "--help")
    assert done.returncode == 0, done.stderr
    for name, stream in READY_STREAMS.items():
        assert name in done.stdout and all(config in done.stdout for config in stream.configs)


@pytest.mark.parametrize("config_name", sorted(CASES))
def test_config_replays_its_exported_stream(tmp_path, config_name):
    stream, size, check, overrides = CASES[config_name]
    config = REPO / "configs" / config_name
    if overrides:
        config = tmp_path / config_name
        config.write_text(_with_params((REPO / "configs" / config_name).read_text(), overrides))
    done = run_cli("export", stream, "data/stream.jsonl", "--size", str(size), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    exported = len((tmp_path / "data" / "stream.jsonl").read_text().splitlines())
    done = run_cli("replay", str(config), "--input", "data/stream.jsonl", "--report", "report", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["events"] == exported and report["dead_letters"] == 0
    assert report["processed"] == exported
    check(report)


def _with_params(text: str, params: dict) -> str:
    """The config text with ``[learner.params]`` keys replaced (each must already be there)."""
    for key, value in params.items():
        lines = text.splitlines()
        (i,) = [i for i, line in enumerate(lines) if line.split("=")[0].strip() == key]
        lines[i] = f"{key} = {value!r}"
        text = "\n".join(lines) + "\n"
    assert tomllib.loads(text)["learner"]["params"].items() >= params.items()
    return text


def test_a_generated_stream_is_the_same_for_the_same_seed_and_differs_for_another(tmp_path):
    for name in ("groups", "segments-shift", "recovering", "pointmass"):
        a, b, c = (tmp_path / f"{name}-{k}.jsonl" for k in "abc")
        export_dataset(name, a, 20)
        export_dataset(name, b, 20)
        export_dataset(name, c, 20, seed=7)
        assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes(), name


def test_export_refuses_an_unknown_name_a_bad_size_and_a_seed_for_a_fixed_data_set(tmp_path):
    done = run_cli("export", "no-such-stream", "x.jsonl", cwd=tmp_path)
    assert done.returncode == 1 and "unknown river data set 'no-such-stream'" in done.stderr
    done = run_cli("export", "groups", "x.jsonl", "--size", "0", cwd=tmp_path)
    assert done.returncode == 1 and "size must be at least 1" in done.stderr
    done = run_cli("export", "phishing", "x.jsonl", "--seed", "3", cwd=tmp_path)
    assert done.returncode == 1 and "--seed applies to generated streams only" in done.stderr
    assert not Path(tmp_path / "x.jsonl").exists()
