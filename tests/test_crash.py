"""kill -9 a replay at random moments, restart it until it finishes: the state equals an uninterrupted run's."""

import json
import random
import subprocess
import sys
import time

from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.config import load_config
from streamlearn.engine.replay import replay

CONFIG = """
[learner]
name = "river"
[learner.params]
model = "linear_model.LogisticRegression"
preprocessing = ["preprocessing.StandardScaler"]
[eval]
metrics = ["Accuracy", "LogLoss"]
label_delay = 20
[output]
predictions = "{dir}/predictions.jsonl"
[checkpoint]
dir = "{dir}/checkpoints"
every_events = 300
every_seconds = 0
"""


def _stream(tmp_path, phishing_jsonl, copies=8):
    lines = phishing_jsonl.read_text().splitlines()
    path = tmp_path / "long.jsonl"
    path.write_text("".join(line + "\n" for _ in range(copies) for line in lines))
    return path, len(lines) * copies


def _config(tmp_path, name):
    path = tmp_path / f"{name}.toml"
    path.write_text(CONFIG.format(dir=tmp_path / name))
    return path


def test_kill_9_at_random_moments_then_restart_gives_the_uninterrupted_state(tmp_path, phishing_jsonl):
    stream, n_events = _stream(tmp_path, phishing_jsonl)
    reference = replay(load_config(_config(tmp_path, "reference")), stream, progress=False)
    reference_hash = CheckpointStore(tmp_path / "reference" / "checkpoints").list()[-1].sha256

    config = _config(tmp_path, "crashy")
    store = CheckpointStore(tmp_path / "crashy" / "checkpoints")
    rng = random.Random(7)
    kills, finished = 0, False
    for attempt in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlearn.cli", "replay", str(config), "--input", str(stream), "--report", str(tmp_path / "rep"), "--no-progress"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if attempt < 4:
            # Wait for this run to make progress (a new checkpoint), then kill it at a random moment.
            seen = store.list()[-1].seq if store.list() else 0
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline and (store.list()[-1].seq if store.list() else 0) == seen:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.4))
            if proc.poll() is None:
                proc.kill()  # SIGKILL: no handler runs, no final checkpoint
                proc.wait()
                kills += 1
                continue
        assert proc.wait(timeout=120) == 0
        finished = True
        break
    assert finished and kills >= 1
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["completed"] and report["events"] == n_events
    assert report["resumed_from_events"] > 0, "no kill landed after a checkpoint"
    entries = CheckpointStore(tmp_path / "crashy" / "checkpoints").list()
    assert entries[-1].events == n_events
    assert entries[-1].sha256 == reference_hash
    assert report["final_metrics"] == reference["final_metrics"]
    # outputs are at-least-once: every event has a prediction, some possibly twice
    rows = [json.loads(line)["source"]["row"] for line in (tmp_path / "crashy" / "predictions.jsonl").read_text().splitlines()]
    assert set(rows) == set(range(n_events))
