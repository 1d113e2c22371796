"""kill -9 a replay at random moments, restart it until it finishes: the state equals an uninterrupted run's."""

import json
import random
import sys

from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.config import load_config
from streamlearn.engine.replay import replay
from streamlearn.testing import kill_until_done

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
    command = [sys.executable, "-m", "streamlearn.cli", "replay", str(config), "--input", str(stream), "--report", str(tmp_path / "rep"), "--no-progress"]
    run = kill_until_done(command, store, kills=4, rng=random.Random(7))
    assert run.finished and run.kills >= 1
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


def test_a_stream_that_ends_on_a_checkpoint_still_stores_the_flushed_state(tmp_path, phishing_jsonl):
    """The last periodic checkpoint falls on the last event; the end-of-stream flush (labels
    still delayed are learned) changes the state after it, so a final checkpoint must follow."""
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(dir=tmp_path / "run").replace("every_events = 300", "every_events = 50"))
    replay(load_config(path), phishing_jsonl, progress=False)
    entries = CheckpointStore(tmp_path / "run" / "checkpoints").list()
    assert [e.events for e in entries[-2:]] == [1250, 1250]
    assert entries[-1].sha256 != entries[-2].sha256
    # a restart at the end of the stream finds nothing left to do and writes nothing more
    replay(load_config(path), phishing_jsonl, progress=False)
    assert CheckpointStore(tmp_path / "run" / "checkpoints").list()[-1].seq == entries[-1].seq
