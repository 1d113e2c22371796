"""Shared fixtures: exported river streams, a CLI runner, and both Kafka clients for every broker test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamlearn.datasets import export_dataset
from tests.kafka_fixtures import broker  # noqa: F401  (the session-scoped real broker)

REPO = Path(__file__).resolve().parents[1]

KAFKA_CLIENTS = ("confluent-kafka", "kafka-python")


def pytest_generate_tests(metafunc):
    # Every test marked ``kafka`` runs once per client: the guarantees must hold with both.
    if metafunc.definition.get_closest_marker("kafka") is not None:
        metafunc.parametrize("kafka_client", KAFKA_CLIENTS, indirect=True)


@pytest.fixture(autouse=True)
def kafka_client(request, monkeypatch):
    """The ``[kafka] client`` of this test, set through the environment so daemon subprocesses use it too."""
    client = getattr(request, "param", None)
    if client is not None:
        monkeypatch.setenv("STREAMLEARN_KAFKA_CLIENT", client)
    return client


@pytest.fixture(scope="session")
def phishing_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "phishing.jsonl"
    export_dataset("phishing", path)
    return path


def write_jsonl(path: Path, events) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for e in events:
            f.write((e if isinstance(e, str) else json.dumps(e)) + "\n")
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m streamlearn.cli ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "streamlearn.cli", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
