"""LAME on scikit-learn's digits under a covariate shift, in the paper's four stream scenarios; and its speed.

A small MLP (64 → 128 → 64 → 10, batch norm after each hidden layer, so TENT has
affine parameters to adapt) is trained on half of the bundled digits (clean).
The other half is streamed with additive Gaussian pixel noise (the shift;
σ = 0.3 on pixels scaled to [0, 1], clean accuracy ≈ 98 % drops to ≈ 78 %) in
the scenarios of Boudiaf et al. (CVPR 2022):

- ``iid``: classes drawn uniformly, random order;
- ``iid+zipf``: classes drawn from a Zipf prior (p_c ∝ 1/rank, random class ranking), random order;
- ``noniid``: classes drawn uniformly, the stream grouped by class (random class order);
- ``noniid+zipf``: Zipf prior and grouped by class.

Each draw is a test image with fresh noise. Methods, all on batches of 16 (the
authors' default): no adaptation; LAME with each affinity (rbf — the authors'
default, first —, kNN, linear; k = 5); LAME kNN with a sliding window of 16
(every event answered at once, context = the 15 before it); TENT (entropy minimisation on the batch-norm affine parameters, batch
statistics, SGD lr 0.01 momentum 0.9, one step per batch, continual over the
stream; each batch is predicted before its step). Accuracy over several seeds
(the seed sets the split, the model, the streams and the noise).

Speed: ``LAME.adapt`` events/s for batches of 64 (kNN) at (K, d) = (10, 64),
(100, 512), (1000, 2048) on one core (BLAS limited to one thread), on
class-clustered synthetic outputs (where the stopping rule ends the procedure
early; mean steps reported) and with the stopping rule disabled (all 100
steps: the worst case). For comparison, in the same process: a PyTorch
implementation written after the operations of the authors' code (broadcast
pairwise norms, ``topk``, ``scatter``, softmax, energy with ``log(clip(Y))``),
and the window mode and the processor (decode + process of parsed events).

    flock /tmp/streamlearn-bench.lock python benchmarks/lame_digits.py [--quick]

Writes benchmarks/results/lame_digits.json, lame_digits.png and lame_digits_speed.png
(``--quick``: into a temporary directory unless ``--out`` says where).
"""

from __future__ import annotations

import os

# One core: set before NumPy / torch load their BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import streamlearn.learners.lame as lame_module  # noqa: E402
from streamlearn.engine.processor import EvalOptions, Item  # noqa: E402
from streamlearn.engine.processors.lame import LAMEProcessor  # noqa: E402
from streamlearn.learners.lame import LAME, affinity_matrix, laplacian_optimization  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # the environment variables above already do it
    threadpool_limits = None

torch.set_num_threads(1)

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("iid", "iid+zipf", "noniid", "noniid+zipf")
BATCH = 16  # the authors' default (fiveai/LAME src/config/defaults.py, ADAPTATION.BATCH_SIZE)
SPEED_BATCH = 64
METHODS = ("none", "lame-rbf", "lame-knn", "lame-linear", f"lame-knn-window{BATCH}", "tent")
NOISE_STD = 0.3  # pixel noise, pixels scaled to [0, 1]
ZIPF_EXPONENT = 1.0
TENT_LR = 0.01


# --------------------------------------------------------------------------- model and data


class MLP(torch.nn.Module):
    def __init__(self, n_in: int = 64, n_classes: int = 10):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(n_in, 128),
            torch.nn.BatchNorm1d(128),
            torch.nn.ReLU(),
            torch.nn.Linear(128, 64),
            torch.nn.BatchNorm1d(64),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features


def train_model(x: np.ndarray, y: np.ndarray, seed: int, epochs: int) -> MLP:
    torch.manual_seed(seed)
    model = MLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt) - 1, 32):
            idx = order[start : start + 32]
            if len(idx) < 2:
                continue
            loss = torch.nn.functional.cross_entropy(model(xt[idx])[0], yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def make_stream(scenario: str, y_pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices into the test pool, drawn by the scenario's class prior and ordered by its rule."""
    classes = np.unique(y_pool)
    prior = np.full(len(classes), 1 / len(classes))
    if "zipf" in scenario:
        ranks = rng.permutation(len(classes)) + 1
        prior = 1.0 / ranks**ZIPF_EXPONENT
        prior /= prior.sum()
    labels = rng.choice(classes, size=n, p=prior)
    if scenario.startswith("noniid"):
        order = rng.permutation(classes)
        labels = np.concatenate([labels[labels == c] for c in order])
    by_class = {c: np.flatnonzero(y_pool == c) for c in classes}
    return np.array([rng.choice(by_class[c]) for c in labels])


# --------------------------------------------------------------------------- methods


def run_tent(source: MLP, x: np.ndarray, lr: float = TENT_LR, batch: int = BATCH) -> np.ndarray:
    """TENT's predictions on the stream ``x``, continual, each batch predicted before its step."""
    model = MLP()
    model.load_state_dict(source.state_dict())
    model.train()  # batch norm uses the test batch's statistics
    params = []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            p.requires_grad_(isinstance(module, torch.nn.BatchNorm1d))
            if isinstance(module, torch.nn.BatchNorm1d):
                params.append(p)
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
    predictions = []
    for start in range(0, len(x), batch):
        logits = model(torch.tensor(x[start : start + batch], dtype=torch.float32))[0]
        predictions.append(logits.argmax(1).numpy())
        entropy = -(logits.softmax(1) * logits.log_softmax(1)).sum(1).mean()
        optimizer.zero_grad()
        entropy.backward()
        optimizer.step()
    return np.concatenate(predictions)


def run_methods(model: MLP, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    with torch.no_grad():
        logits, features = model(torch.tensor(x, dtype=torch.float32))
    probs = logits.double().softmax(1).numpy()
    features = features.double().numpy()
    preds = {"none": probs.argmax(1)}
    diagnostics: dict[str, dict[str, float]] = {}
    for affinity in ("rbf", "knn", "linear"):
        lame = LAME(affinity=affinity, knn=5, batch_size=BATCH)
        preds[f"lame-{affinity}"] = np.concatenate([lame.push_many(probs, features), lame.flush()]).argmax(1)
        # Per batch: the steps the procedure took, and how much weight the
        # neighbours get (the off-diagonal row sums of W; log-probability gaps are a few units).
        steps, row_sums = [], []
        for start in range(0, len(x), BATCH):
            kernel = affinity_matrix(features[start : start + BATCH], affinity, 5)
            steps.append(laplacian_optimization(np.log(probs[start : start + BATCH] + 1e-10), kernel, return_steps=True)[1])
            row_sums.append(float((kernel.sum(1) - np.diag(kernel)).mean()))
        diagnostics[f"lame-{affinity}"] = {"mean_steps": float(np.mean(steps)), "mean_neighbour_weight": float(np.mean(row_sums))}
    preds[f"lame-knn-window{BATCH}"] = LAME(affinity="knn", window=BATCH).push_many(probs, features).argmax(1)
    preds["tent"] = run_tent(model, x)
    return preds, diagnostics


def accuracy_experiment(seeds: list[int], n_stream: int, epochs: int) -> dict:
    digits = load_digits()
    x_all, y_all = digits.data / 16.0, digits.target
    per_seed = []
    for seed in seeds:
        x_train, x_test, y_train, y_test = train_test_split(x_all, y_all, test_size=0.5, stratify=y_all, random_state=seed)
        model = train_model(x_train, y_train, seed, epochs)
        rng = np.random.default_rng(seed)
        with torch.no_grad():
            clean = float((model(torch.tensor(x_test, dtype=torch.float32))[0].argmax(1).numpy() == y_test).mean())
        record = {"seed": seed, "clean_test_accuracy": clean, "scenarios": {}}
        for scenario in SCENARIOS:
            idx = make_stream(scenario, y_test, n_stream, rng)
            x = x_test[idx] + rng.normal(scale=NOISE_STD, size=(n_stream, x_test.shape[1]))
            preds, diagnostics = run_methods(model, x)
            record["scenarios"][scenario] = {
                "accuracy": {m: float((preds[m] == y_test[idx]).mean()) for m in METHODS},
                "lame_diagnostics": diagnostics,
            }
        per_seed.append(record)
        print(f"seed {seed}: clean {clean:.3f} | " + " | ".join(
            f"{s}: " + " ".join(f"{m}={record['scenarios'][s]['accuracy'][m]:.3f}" for m in ("none", "lame-knn", "tent"))
            for s in SCENARIOS))
    summary = {}
    for scenario in SCENARIOS:
        accs = {m: np.array([r["scenarios"][scenario]["accuracy"][m] for r in per_seed]) for m in METHODS}
        summary[scenario] = {
            m: {
                "mean": float(a.mean()),
                "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                "gain_vs_none_mean": float((a - accs["none"]).mean()),
                "gain_vs_none_min": float((a - accs["none"]).min()),
            }
            for m, a in accs.items()
        }
    return {"per_seed": per_seed, "summary": summary}


# --------------------------------------------------------------------------- speed


def torch_reference_style(probs: torch.Tensor, features: torch.Tensor, knn: int = 5, max_steps: int = 100) -> torch.Tensor:
    """LAME (kNN) with the tensor operations the authors' code uses, for a speed comparison."""
    unit = torch.nn.functional.normalize(features, p=2, dim=-1)
    n = unit.shape[0]
    dist = torch.norm(unit.unsqueeze(0) - unit.unsqueeze(1), dim=-1, p=2)
    neighbours = dist.topk(min(knn + 1, n), dim=-1, largest=False).indices[:, 1:]
    kernel = torch.zeros(n, n, dtype=unit.dtype).scatter_(-1, neighbours, 1.0)
    unary = -torch.log(probs + 1e-10)
    y = (-unary).softmax(-1)
    old = float("inf")
    for step in range(max_steps):
        pairwise = kernel @ y
        y = (pairwise - unary).softmax(-1)
        energy = float((unary * y - pairwise * y + y * torch.log(y.clip(1e-20))).sum())
        if step > 1 and abs(energy - old) <= 1e-8 * abs(old):
            break
        old = energy
    return y


def synthetic_batches(n_classes: int, dim: int, count: int, rng: np.random.Generator):
    """Class-clustered features and noisy, mostly right probabilities (a plausible classifier)."""
    centers = rng.normal(size=(n_classes, dim))
    batches = []
    for _ in range(count):
        labels = rng.integers(0, n_classes, SPEED_BATCH)
        features = centers[labels] + rng.normal(size=(SPEED_BATCH, dim))
        logits = rng.normal(size=(SPEED_BATCH, n_classes))
        logits[np.arange(SPEED_BATCH), labels] += 2.0
        probs = np.exp(logits - logits.max(1, keepdims=True))
        batches.append((probs / probs.sum(1, keepdims=True), features))
    return batches


def best_rates(runs: dict, events: dict, repeats: int) -> dict:
    """Events/s of each run, best of ``repeats``, by wall clock and by this process's CPU time.

    The runs are interleaved (one of each per repeat) so that load from other
    processes on a shared machine hits them alike; CPU time is what one core
    spends, whatever else the machine does.
    """
    wall = dict.fromkeys(runs, math.inf)
    cpu = dict.fromkeys(runs, math.inf)
    for _ in range(repeats):
        for name, run in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            run()
            cpu[name] = min(cpu[name], time.process_time() - c0)
            wall[name] = min(wall[name], time.perf_counter() - w0)
    return {
        name: {"wall": events[name] / wall[name], "cpu": events[name] / max(cpu[name], 1e-9)} for name in runs
    }


def speed_experiment(quick: bool) -> dict:
    rng = np.random.default_rng(0)
    repeats = 2 if quick else 7
    out = []
    for n_classes, dim in ((10, 64), (100, 512), (1000, 2048)):
        count = 4 if quick else (20 if n_classes < 1000 else 8)
        batches = synthetic_batches(n_classes, dim, count, rng)
        torch_batches = [(torch.tensor(p), torch.tensor(f)) for p, f in batches]
        lame = LAME(affinity="knn")

        def all_steps():  # the worst case: the stopping rule never fires, all max_steps steps run
            saved = lame_module.ENERGY_RTOL
            lame_module.ENERGY_RTOL = -1.0
            try:
                for p, f in batches:
                    lame.adapt(p, f)
            finally:
                lame_module.ENERGY_RTOL = saved

        runs = {
            "adapt": lambda: [lame.adapt(p, f) for p, f in batches],
            "adapt_all_100_steps": all_steps,
            "torch_reference_style_float64": lambda: [torch_reference_style(p, f) for p, f in torch_batches],
        }
        events = dict.fromkeys(runs, count * SPEED_BATCH)
        if (n_classes, dim) == (100, 512):
            probs = np.concatenate([p for p, _ in batches])
            features = np.concatenate([f for _, f in batches])
            n_window = 256 if quick else 640
            runs["window64"] = lambda: LAME(affinity="knn", window=SPEED_BATCH).push_many(probs[:n_window], features[:n_window])
            events["window64"] = n_window
            events_json = [{"probs": p.tolist(), "features": f.tolist()} for p, f in zip(probs, features, strict=True)]

            def through_processor():
                processor = LAMEProcessor(LAME(affinity="knn", batch_size=SPEED_BATCH), EvalOptions(), emit=True)
                processor.process([Item({"row": i}, processor.decode(e), e) for i, e in enumerate(events_json)])

            runs["processor"] = through_processor
            events["processor"] = len(events_json)
        rates = best_rates(runs, events, repeats)
        row = {"K": n_classes, "d": dim, "batch": SPEED_BATCH, "affinity": "knn", "batches": count}
        for name, rate in rates.items():
            row[f"{name}_events_per_s"] = rate["cpu"]
            row[f"{name}_events_per_s_wall"] = rate["wall"]
        row["mean_steps"] = float(np.mean([
            laplacian_optimization(np.log(p + 1e-10), affinity_matrix(f), return_steps=True)[1] for p, f in batches
        ]))
        row["speedup_vs_torch_reference_style"] = row["adapt_events_per_s"] / row["torch_reference_style_float64_events_per_s"]
        row["max_abs_diff_vs_torch_reference_style"] = float(max(
            np.abs(lame.adapt(p, f) - torch_reference_style(tp, tf).numpy()).max()
            for (p, f), (tp, tf) in zip(batches, torch_batches, strict=True)
        ))
        out.append(row)
        print(
            f"speed K={n_classes} d={dim} (CPU time; wall clock in brackets): "
            f"adapt {row['adapt_events_per_s']:,.0f} [{row['adapt_events_per_s_wall']:,.0f}] ev/s "
            f"({row['mean_steps']:.1f} steps), all 100 steps {row['adapt_all_100_steps_events_per_s']:,.0f} ev/s, "
            f"torch reference-style {row['torch_reference_style_float64_events_per_s']:,.0f} ev/s "
            f"(x{row['speedup_vs_torch_reference_style']:.1f}), max diff {row['max_abs_diff_vs_torch_reference_style']:.1e}"
            + (f", window64 {row['window64_events_per_s']:,.0f} ev/s, processor {row['processor_events_per_s']:,.0f} ev/s"
               if "window64_events_per_s" in row else "")
        )
    return {
        "clock": "events/s from the best of the repeats; *_events_per_s: this process's CPU time (one core), "
        "*_events_per_s_wall: wall clock (includes time other processes on the shared machine took)",
        "repeats": repeats,
        "results": out,
    }


# --------------------------------------------------------------------------- report


def plot(report: dict, path: Path, speed_path: Path) -> None:
    summary = report["accuracy"]["summary"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(METHODS)
    for i, method in enumerate(METHODS):
        means = [summary[s][method]["mean"] for s in SCENARIOS]
        stds = [summary[s][method]["std"] for s in SCENARIOS]
        ax.bar(np.arange(len(SCENARIOS)) + (i - (len(METHODS) - 1) / 2) * width, means, width, yerr=stds, label=method, capsize=2)
    ax.set_xticks(np.arange(len(SCENARIOS)), SCENARIOS)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    n_seeds = len(report["accuracy"]["per_seed"])
    ax.set_title(f"digits + Gaussian noise σ={NOISE_STD}, batches of {BATCH}, {n_seeds} seed(s) (mean ± std)")
    ax.legend(ncol=len(METHODS), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

    rows = report["speed"]["results"]
    labels = [f"K={r['K']}, d={r['d']}" for r in rows]
    series = {
        "LAME.adapt": [r["adapt_events_per_s"] for r in rows],
        "LAME.adapt, all 100 steps": [r["adapt_all_100_steps_events_per_s"] for r in rows],
        "torch, reference-style ops": [r["torch_reference_style_float64_events_per_s"] for r in rows],
    }
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(rows)) + (i - 1) * width, values, width, label=name)
    ax.axhline(50_000, color="k", ls="--", lw=1, label="target at (100, 512)")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(rows)), labels)
    ax.set_ylabel("events / s (one core's CPU time, float64)")
    ax.set_title(f"LAME kNN throughput, batches of {SPEED_BATCH}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(speed_path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, short streams, few repeats (well under a minute)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="output directory (default: benchmarks/results; a temporary one with --quick)")
    args = parser.parse_args()
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="lame-bench-")) if args.quick else RESULTS)
    seeds = [0] if args.quick else list(range(args.seeds))
    n_stream = 256 if args.quick else 1280
    epochs = 15 if args.quick else 40

    if threadpool_limits is not None:
        threadpool_limits(1)  # for the rest of the process
    started = time.perf_counter()
    report = {
        "benchmark": "lame_digits",
        "quick": args.quick,
        "setup": {
            "data": "sklearn digits (1797 images 8x8), stratified 50/50 train/test split per seed, pixels / 16",
            "model": "MLP 64-128-64-10, BatchNorm1d + ReLU after each hidden layer, Adam lr 1e-3, wd 1e-4, batch 32",
            "epochs": epochs,
            "shift": f"additive Gaussian pixel noise, std {NOISE_STD}, fresh per event",
            "stream_events": n_stream,
            "batch_size": BATCH,
            "zipf_exponent": ZIPF_EXPONENT,
            "noniid": "stream grouped by class, random class order",
            "tent": f"BN affine params, batch statistics, SGD lr {TENT_LR} momentum 0.9, one step per batch, continual",
            "lame": f"knn=5, max_steps=100, batches of {BATCH}; window mode: kNN, window={BATCH}",
            "seeds": seeds,
        },
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "processor": platform.processor() or platform.machine(),
            "threads": "1 (OMP/OPENBLAS/MKL_NUM_THREADS=1, threadpoolctl, torch.set_num_threads(1))",
        },
    }
    report["accuracy"] = accuracy_experiment(seeds, n_stream, epochs)
    report["speed"] = speed_experiment(args.quick)
    summary = report["accuracy"]["summary"]
    at_100_512 = next(r for r in report["speed"]["results"] if (r["K"], r["d"]) == (100, 512))
    report["checks"] = {
        **{f"lame_rbf_default_gain_{s.replace('+', '_')}": summary[s]["lame-rbf"]["gain_vs_none_mean"] for s in SCENARIOS},
        "lame_knn_gain_noniid": summary["noniid"]["lame-knn"]["gain_vs_none_mean"],
        "lame_knn_gain_noniid_zipf": summary["noniid+zipf"]["lame-knn"]["gain_vs_none_mean"],
        "lame_knn_gain_iid": summary["iid"]["lame-knn"]["gain_vs_none_mean"],
        "lame_knn_gain_iid_zipf": summary["iid+zipf"]["lame-knn"]["gain_vs_none_mean"],
        "lame_knn_within_1pt_on_iid_streams": bool(
            min(summary[s]["lame-knn"]["gain_vs_none_mean"] for s in ("iid", "iid+zipf")) >= -0.01
        ),
        "adapt_events_per_s_at_100_512": at_100_512["adapt_events_per_s"],
        "adapt_events_per_s_at_100_512_wall": at_100_512["adapt_events_per_s_wall"],
        "meets_50k_events_per_s_at_100_512": bool(at_100_512["adapt_events_per_s"] >= 50_000),
    }
    report["elapsed_seconds"] = time.perf_counter() - started

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "lame_digits.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, out_dir / "lame_digits.png", out_dir / "lame_digits_speed.png")

    print(f"\naccuracy (mean over {len(seeds)} seed(s)):")
    print(f"{'scenario':<13}" + "".join(f"{m:>19}" for m in METHODS))
    for s in SCENARIOS:
        print(f"{s:<13}" + "".join(f"{summary[s][m]['mean']:>13.3f}±{summary[s][m]['std']:.3f}" for m in METHODS))
    print("checks:", json.dumps(report["checks"]))
    print(f"wrote {json_path} ({report['elapsed_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
