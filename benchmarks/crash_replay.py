"""kill -9 trials for file replays: how many restarted runs end in the uninterrupted state.

Each trial replays a stream (river's Phishing repeated) with checkpoints, kills
the process with SIGKILL at random moments (``--kills`` times, each after the run
has made progress), restarts it until it finishes, and compares the final state
hash (the manifest's SHA-256 of the last checkpoint) with an uninterrupted run.
Different learners and label delays are cycled through the trials.

    python benchmarks/crash_replay.py [--trials 20] [--kills 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

import structlog

from streamlearn.datasets import export_dataset
from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.config import load_config
from streamlearn.engine.replay import replay
from streamlearn.testing import kill_until_done

RESULTS = Path(__file__).resolve().parent / "results"

CONFIG = """
[learner]
name = "river"
[learner.params]
model = "{model}"
preprocessing = ["preprocessing.StandardScaler"]
[eval]
metrics = ["Accuracy"]
label_delay = {delay}
[output]
predictions = "{dir}/predictions.jsonl"
[checkpoint]
dir = "{dir}/checkpoints"
every_events = {every}
every_seconds = 0
"""

VARIANTS = [
    ("linear_model.LogisticRegression", 0, 250),
    ("linear_model.LogisticRegression", 30, 400),
    ("linear_model.Perceptron", 5, 333),
    ("linear_model.PAClassifier", 0, 500),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--kills", type=int, default=5, help="kills per trial")
    parser.add_argument("--copies", type=int, default=20, help="passes over Phishing per stream")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 trials, 2 kills each")
    parser.add_argument("--out", default=str(RESULTS / "crash_replay.json"))
    args = parser.parse_args()
    if args.quick:
        args.trials, args.kills, args.copies = 2, 2, 4
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rng = random.Random(args.seed)

    trials = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_dataset("phishing", tmp / "one.jsonl")
        stream = tmp / "stream.jsonl"
        stream.write_text((tmp / "one.jsonl").read_text() * args.copies)
        references: dict[tuple, str] = {}
        for trial in range(args.trials):
            model, delay, every = VARIANTS[trial % len(VARIANTS)]
            key = (model, delay, every)
            if key not in references:
                ref_dir = tmp / f"ref-{len(references)}"
                (tmp / "ref.toml").write_text(CONFIG.format(model=model, delay=delay, every=every, dir=ref_dir))
                replay(load_config(tmp / "ref.toml"), stream, progress=False)
                references[key] = CheckpointStore(ref_dir / "checkpoints").list()[-1].sha256
            run_dir = tmp / f"trial-{trial}"
            config = tmp / f"trial-{trial}.toml"
            config.write_text(CONFIG.format(model=model, delay=delay, every=every, dir=run_dir))
            store = CheckpointStore(run_dir / "checkpoints")
            command = [sys.executable, "-m", "streamlearn.cli", "replay", str(config), "--input", str(stream), "--no-progress"]
            run = kill_until_done(command, store, kills=args.kills, rng=rng)
            final = store.list()[-1] if store.list() else None
            held = bool(run.finished and final is not None and final.sha256 == references[key])
            trials.append({"trial": trial, "model": model, "label_delay": delay, "every_events": every, "kills": run.kills, "finished": run.finished, "state_equal": held})
            print(f"trial {trial:3d} {model:34s} delay={delay:<3d} kills={run.kills} state equal: {held}", flush=True)

    held = sum(t["state_equal"] for t in trials)
    result = {
        "benchmark": "crash_replay",
        "events_per_stream": 1250 * args.copies,
        "trials": len(trials),
        "kills_total": sum(t["kills"] for t in trials),
        "trials_state_equal": held,
        "all_held": held == len(trials),
        "seconds": time.perf_counter() - t_start,
        "details": trials,
        "quick": args.quick,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{held}/{len(trials)} trials ended in the uninterrupted state ({result['kills_total']} kills)")


if __name__ == "__main__":
    main()
