"""streamlearn inside a service: OnlineModel's overhead, the example service's throughput, big checkpoints.

1. In-process latency of ``predict_one`` + ``learn_one`` through ``OnlineModel`` against the
   bare river model (LogisticRegression behind a StandardScaler, the Phishing stream repeated),
   both in this process, timed per event and interleaved in blocks (alternating which goes
   first, garbage collection paused); p50 / p99 and their
   ratio. Target: ≤ 1.2× at p50.
2. HTTP throughput of ``examples/service`` (uvicorn, one worker) with 8 client threads:
   ``/predict`` requests/s, and ``/learn`` requests/s, each acknowledged only once fsync'd.
3. A 100-tree ``forest.ARFClassifier`` trained on 50,000 events of river's Agrawal
   generator: checkpoint write (``CheckpointStore.save``) and load (``load_learner``) times
   and size, against ``pickle`` of the same model (dump + fsync, load); the loaded model
   must predict identically.

    python benchmarks/embedded.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import pickle
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import structlog

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------- 1. in-process


def in_process_latency(events: int, block: int = 500) -> dict:
    from river import datasets, linear_model, preprocessing

    import streamlearn

    data = list(datasets.Phishing())
    bare = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    online = streamlearn.OnlineModel(preprocessing.StandardScaler() | linear_model.LogisticRegression())
    timer = time.perf_counter_ns
    bare_ns: list[int] = []
    online_ns: list[int] = []
    def run_bare(stream: list) -> None:
        for x, y in stream:
            t0 = timer()
            bare.predict_one(x)
            bare.learn_one(x, y)
            bare_ns.append(timer() - t0)

    def run_online(stream: list) -> None:
        for x, y in stream:
            t0 = timer()
            p = online.predict_one(x)
            online.learn_one(x, y, prediction=p)
            online_ns.append(timer() - t0)

    gc.disable()  # a collection would land on one side or the other at random
    try:
        for n, start in enumerate(range(0, events, block)):
            stream = [data[i % len(data)] for i in range(start, min(events, start + block))]
            # Alternate which side goes first, so drifts of the machine's speed cancel.
            for run in (run_bare, run_online) if n % 2 == 0 else (run_online, run_bare):
                run(stream)
    finally:
        gc.enable()
    result = {"model": "StandardScaler | LogisticRegression", "events": events}
    for name, values in (("bare_river", bare_ns), ("online_model", online_ns)):
        result[name] = {"p50_us": percentile(values, 0.5) / 1e3, "p99_us": percentile(values, 0.99) / 1e3}
    result["ratio_p50"] = result["online_model"]["p50_us"] / result["bare_river"]["p50_us"]
    result["ratio_p99"] = result["online_model"]["p99_us"] / result["bare_river"]["p99_us"]
    result["target_ratio_p50"] = 1.2
    result["online_model_accuracy"] = online.metrics()["Accuracy"]
    return result


# --------------------------------------------------------------------------- 2. HTTP


def http_throughput(seconds: float, threads: int = 8) -> dict:
    import httpx

    from tests.test_service import Server

    with tempfile.TemporaryDirectory() as directory:
        server = Server(directory, every_events=10_000)
        try:
            result = {"threads": threads, "seconds_per_phase": seconds}
            for phase in ("predict", "learn"):
                latencies: list[list[float]] = [[] for _ in range(threads)]
                stop = time.monotonic() + seconds

                def client(index: int) -> None:
                    with httpx.Client(base_url=server.url, timeout=30) as http:
                        i = 0
                        while time.monotonic() < stop:
                            x = {"a": (i % 97) / 97, "b": (i % 13) / 13}
                            body = {"id": f"{index}-{i}", "x": x}
                            if phase == "learn":
                                body["y"] = x["a"] > 0.5
                            t0 = time.perf_counter()
                            answer = http.post(f"/{phase}", json=body)
                            latencies[index].append(time.perf_counter() - t0)
                            assert answer.status_code == 200, answer.text
                            i += 1

                workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
                t0 = time.perf_counter()
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                elapsed = time.perf_counter() - t0
                flat = [v for per in latencies for v in per]
                result[phase] = {
                    "requests": len(flat),
                    "requests_per_second": len(flat) / elapsed,
                    "p50_ms": percentile(flat, 0.5) * 1e3,
                    "p99_ms": percentile(flat, 0.99) * 1e3,
                }
            result["learn"]["note"] = "each /learn answered only after an fsync covers it (group commit)"
            return result
        finally:
            server.kill()


# --------------------------------------------------------------------------- 3. ARF checkpoint


def arf_checkpoint(events: int, trees: int, rounds: int) -> dict:
    from river import forest
    from river.datasets import synth

    import streamlearn
    from streamlearn.engine.checkpoint import CheckpointStore
    from streamlearn.engine.checkpointing import learner_spec, state_of
    from streamlearn.learners import RiverLearner

    learner = RiverLearner.from_estimator(forest.ARFClassifier(n_models=trees, seed=1))
    t0 = time.perf_counter()
    for x, y in synth.Agrawal(seed=1).take(events):
        learner.learn_one(x, y)
    train_seconds = time.perf_counter() - t0
    probe = [x for x, _ in synth.Agrawal(seed=2).take(200)]
    expected = [learner.predict_proba_one(x) for x in probe]

    write, read, write_pickle, read_pickle = [], [], [], []
    with tempfile.TemporaryDirectory() as directory:
        for r in range(rounds):
            store = CheckpointStore(Path(directory) / f"ckpt{r}", keep=1)
            gc.collect()
            t0 = time.perf_counter()
            info = store.save(state_of(learner), events=events, learner=learner_spec(learner, "river"))
            write.append(time.perf_counter() - t0)
            gc.collect()
            t0 = time.perf_counter()
            loaded = streamlearn.load_learner(store.location)
            read.append(time.perf_counter() - t0)
            assert [loaded.predict_proba_one(x) for x in probe] == expected, "the loaded forest predicts differently"
            del loaded
            path = Path(directory) / f"model{r}.pkl"
            gc.collect()
            t0 = time.perf_counter()
            with open(path, "wb") as f:
                pickle.dump(learner.pipeline, f, protocol=5)
                f.flush()
                os.fsync(f.fileno())
            write_pickle.append(time.perf_counter() - t0)
            gc.collect()
            t0 = time.perf_counter()
            with open(path, "rb") as f:
                unpickled = pickle.load(f)
            read_pickle.append(time.perf_counter() - t0)
            del unpickled
        checkpoint_bytes, pickle_bytes = info.bytes, path.stat().st_size
    return {
        "model": f"forest.ARFClassifier(n_models={trees}, seed=1)",
        "stream": "river.datasets.synth.Agrawal(seed=1)",
        "events": events,
        "train_seconds": train_seconds,
        "rounds": rounds,
        "checkpoint": {"write_s": statistics.median(write), "load_s": statistics.median(read), "bytes": checkpoint_bytes},
        "pickle": {"write_s": statistics.median(write_pickle), "load_s": statistics.median(read_pickle), "bytes": pickle_bytes},
        "ratio": {
            "write": statistics.median(write) / statistics.median(write_pickle),
            "load": statistics.median(read) / statistics.median(read_pickle),
            "bytes": checkpoint_bytes / pickle_bytes,
        },
        "identical_predictions": True,
        "note": "checkpoint load = read + SHA-256 check + pickle-free decode (no code can run); pickle load can run code",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS / "embedded.json")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    quick = args.quick
    result = {
        "benchmark": "embedded",
        "quick": quick,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    result["in_process"] = in_process_latency(5_000 if quick else 50_000)
    print(json.dumps(result["in_process"], indent=1), flush=True)
    result["http"] = http_throughput(3.0 if quick else 10.0)
    print(json.dumps(result["http"], indent=1), flush=True)
    result["arf_checkpoint"] = arf_checkpoint(events=1_000 if quick else 50_000, trees=100, rounds=1 if quick else 3)
    print(json.dumps(result["arf_checkpoint"], indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
