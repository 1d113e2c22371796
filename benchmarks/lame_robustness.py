"""LAME's robustness study, scaled down: batch sizes, neighbours, corruptions, and TENT tuned on the wrong scenario.

Boudiaf et al. (CVPR 2022) show that test-time adaptation methods whose
hyperparameters are chosen on one scenario can fail badly on another, and that
LAME does not. This reproduces the study on scikit-learn's digits with the
frozen MLP of ``benchmarks/lame_digits.py`` (trained on clean images):

- corruptions of the test images: Gaussian noise (σ = 0.3), impulse noise
  (12 % of pixels set to 0 or 1), blur (a 3×3 binomial filter applied twice),
  shift (one pixel to the right, wrapping); fresh per event;
- the paper's four stream scenarios (i.i.d., i.i.d. + Zipf prior, grouped by
  class, grouped + Zipf; ``lame_digits.make_stream``);
- batch sizes 16, 32, 64, 128; LAME with each affinity (rbf — the authors'
  default, first —, kNN, linear) and k ∈ {1, 3, 5}; TENT (batch-norm affine
  parameters, SGD momentum 0.9, one step per batch) with learning rates
  1e-4 … 1e-1; no adaptation.

Rows, paper mode first: ``lame-rbf-k5`` at batch 16 is the authors' default.
Accuracy is the mean over seeds (the seed sets the split, the model, the
streams and the corruption noise).

Tuned on the wrong scenario (the paper's cross-scenario study): at the default
batch of 16, each method's hyperparameters (TENT: learning rate; LAME:
affinity and k) are chosen on the Gaussian-noise corruption (validation) in
one scenario and evaluated on the other three corruptions (test) in every
scenario. ``cross_scenario[method][tuned_on][tested_on]`` is the test accuracy
minus no adaptation's.

    flock /tmp/bench.lock python benchmarks/lame_robustness.py [--quick]

Writes benchmarks/results/lame_robustness.json and lame_robustness.png
(``--quick``: one seed, short streams, into a temporary directory unless
``--out`` says where).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before BLAS loads
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lame_digits import SCENARIOS, make_stream, run_tent, train_model  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from streamlearn.learners.lame import LAME  # noqa: E402

torch.set_num_threads(1)

RESULTS = Path(__file__).resolve().parent / "results"
BATCH_SIZES = (16, 32, 64, 128)
KNNS = (1, 3, 5)
AFFINITIES = ("rbf", "knn", "linear")  # the authors' default first
TENT_LRS = (1e-4, 1e-3, 1e-2, 1e-1)
DEFAULT_BATCH = 16
VALIDATION = "gaussian"  # the corruption hyperparameters are tuned on


def _blur(x: np.ndarray) -> np.ndarray:
    image = np.pad(x.reshape(-1, 8, 8), ((0, 0), (1, 1), (1, 1)), mode="edge")
    weights = np.array([0.25, 0.5, 0.25])
    out = sum(weights[i] * weights[j] * image[:, i : i + 8, j : j + 8] for i in range(3) for j in range(3))
    return out.reshape(-1, 64)


CORRUPTIONS = {
    "gaussian": lambda x, rng: x + rng.normal(scale=0.3, size=x.shape),
    "impulse": lambda x, rng: np.where(rng.random(x.shape) < 0.12, rng.integers(0, 2, x.shape).astype(float), x),
    "blur": lambda x, rng: _blur(_blur(x)),
    "shift": lambda x, rng: np.roll(x.reshape(-1, 8, 8), 1, axis=2).reshape(-1, 64),
}


def lame_methods() -> list[tuple[str, dict]]:
    return [(f"lame-{a}-k{k}", {"affinity": a, "knn": k}) for a in AFFINITIES for k in sorted(KNNS, reverse=True)]


def tent_methods() -> list[tuple[str, float]]:
    return [(f"tent-lr{lr:g}", lr) for lr in TENT_LRS]


def run_stream(model, x: np.ndarray, y: np.ndarray) -> dict[int, dict[str, float]]:
    """Accuracy of every method at every batch size on one corrupted stream."""
    with torch.no_grad():
        logits, features = model(torch.tensor(x, dtype=torch.float32))
    probs, features = logits.double().softmax(1).numpy(), features.double().numpy()
    none = float((probs.argmax(1) == y).mean())
    out = {}
    for batch in BATCH_SIZES:
        row = {"none": none}
        for name, params in lame_methods():
            lame = LAME(batch_size=batch, **params)
            row[name] = float((np.concatenate([lame.push_many(probs, features), lame.flush()]).argmax(1) == y).mean())
        for name, lr in tent_methods():
            row[name] = float((run_tent(model, x, lr=lr, batch=batch) == y).mean())
        out[batch] = row
    return out


def collect(seeds: list[int], n_stream: int, epochs: int) -> dict:
    """accuracy[seed][corruption][scenario][batch][method]."""
    digits = load_digits()
    x_all, y_all = digits.data / 16.0, digits.target
    runs = {}
    for seed in seeds:
        x_train, x_test, y_train, y_test = train_test_split(x_all, y_all, test_size=0.5, stratify=y_all, random_state=seed)
        model = train_model(x_train, y_train, seed, epochs)
        rng = np.random.default_rng([seed, 7])
        runs[seed] = {}
        for corruption, corrupt in CORRUPTIONS.items():
            runs[seed][corruption] = {}
            for scenario in SCENARIOS:
                idx = make_stream(scenario, y_test, n_stream, rng)
                runs[seed][corruption][scenario] = run_stream(model, corrupt(x_test[idx], rng), y_test[idx])
            print(f"seed {seed} {corruption}: " + " ".join(
                f"{s}={runs[seed][corruption][s][DEFAULT_BATCH]['lame-rbf-k5']:.3f}/{runs[seed][corruption][s][DEFAULT_BATCH]['none']:.3f}"
                for s in SCENARIOS), flush=True)
    return runs


def mean_table(runs: dict) -> dict:
    """table[corruption][scenario][batch][method] = mean accuracy over seeds."""
    seeds = list(runs)
    first = runs[seeds[0]]
    return {
        c: {
            s: {
                str(b): {m: float(np.mean([runs[seed][c][s][b][m] for seed in seeds])) for m in first[c][s][b]}
                for b in BATCH_SIZES
            }
            for s in SCENARIOS
        }
        for c in CORRUPTIONS
    }


def cross_scenario(table: dict) -> dict:
    """Hyperparameters tuned on (VALIDATION corruption, one scenario), tested on the other corruptions everywhere."""
    tests = [c for c in CORRUPTIONS if c != VALIDATION]
    batch = str(DEFAULT_BATCH)

    def score(corruptions, scenario, method):
        return float(np.mean([table[c][scenario][batch][method] - table[c][scenario][batch]["none"] for c in corruptions]))

    out = {}
    for family, names in (("tent", [n for n, _ in tent_methods()]), ("lame", [n for n, _ in lame_methods()])):
        chosen = {s: max(names, key=lambda m, s=s: score([VALIDATION], s, m)) for s in SCENARIOS}
        out[family] = {
            "chosen_on_validation": chosen,
            "gain_vs_none_on_test": {
                tuned: {tested: score(tests, tested, chosen[tuned]) for tested in SCENARIOS} for tuned in SCENARIOS
            },
            "worst_gain_when_tuned_on_another_scenario": min(
                score(tests, tested, chosen[tuned]) for tuned in SCENARIOS for tested in SCENARIOS if tuned != tested
            ),
        }
    out["lame_default_rbf_k5"] = {"gain_vs_none_on_test": {s: score(tests, s, "lame-rbf-k5") for s in SCENARIOS}}
    return out


def summary(table: dict) -> dict:
    """Per batch size and method: accuracy gain over no adaptation, mean and worst over corruptions × scenarios."""
    out = {}
    methods = list(next(iter(next(iter(table.values())).values()))[str(DEFAULT_BATCH)])
    for batch in map(str, BATCH_SIZES):
        out[batch] = {}
        for method in methods:
            gains = {
                s: [table[c][s][batch][method] - table[c][s][batch]["none"] for c in CORRUPTIONS] for s in SCENARIOS
            }
            out[batch][method] = {
                "mean_gain_iid_scenarios": float(np.mean(gains["iid"] + gains["iid+zipf"])),
                "mean_gain_noniid_scenarios": float(np.mean(gains["noniid"] + gains["noniid+zipf"])),
                "worst_gain": float(min(min(g) for g in gains.values())),
            }
    return out


def plot(report: dict, path: Path) -> None:
    summ = report["summary"]
    cross = report["cross_scenario"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for ax, key, title in ((axes[0], "mean_gain_iid_scenarios", "i.i.d. scenarios"),
                           (axes[1], "mean_gain_noniid_scenarios", "class-grouped scenarios")):  # fmt: skip
        for method, style in (("lame-rbf-k5", "C0-o"), ("lame-knn-k5", "C1-s"), ("lame-linear-k5", "C2-^"),
                              ("lame-knn-k1", "C1:s"), ("tent-lr0.01", "C3-d"), ("tent-lr0.1", "C3:d")):  # fmt: skip
            ax.plot(BATCH_SIZES, [summ[str(b)][method][key] for b in BATCH_SIZES], style, label=method)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xscale("log", base=2)
        ax.set_xticks(BATCH_SIZES, [str(b) for b in BATCH_SIZES])
        ax.set_xlabel("batch size")
        ax.set_ylabel("accuracy gain over no adaptation")
        ax.set_title(f"{title}, mean over {len(CORRUPTIONS)} corruptions")
        ax.legend(fontsize=7)
    ax = axes[2]
    labels = []
    for k, family in enumerate(("lame", "tent")):
        gains = cross[family]["gain_vs_none_on_test"]
        same = [gains[s][s] for s in SCENARIOS]
        other = [min(gains[t][s] for t in SCENARIOS if t != s) for s in SCENARIOS]
        pos = np.arange(len(SCENARIOS)) + (k - 0.5) * 0.4
        ax.bar(pos - 0.1, same, 0.2, color=f"C{3 * k}", label=f"{family}: tuned on the same scenario")
        ax.bar(pos + 0.1, other, 0.2, color=f"C{3 * k}", alpha=0.45, hatch="//", label=f"{family}: tuned on the worst other scenario")
        labels = list(SCENARIOS)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(np.arange(len(SCENARIOS)), labels)
    ax.set_xlabel("tested on")
    ax.set_ylabel("accuracy gain over no adaptation (test corruptions)")
    ax.set_title(f"hyperparameters tuned on {VALIDATION} noise, batch {DEFAULT_BATCH}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, short streams (about a minute)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="output directory (default: benchmarks/results; a temporary one with --quick)")
    args = parser.parse_args(argv)
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="lame-robustness-")) if args.quick else RESULTS)
    seeds = [0] if args.quick else list(range(args.seeds))
    n_stream, epochs = (256, 15) if args.quick else (1024, 40)
    started = time.perf_counter()
    runs = collect(seeds, n_stream, epochs)
    table = mean_table(runs)
    report = {
        "benchmark": "lame_robustness",
        "quick": args.quick,
        "paper": "Boudiaf, Mueller, Ben Ayed, Bertinetto, Parameter-free Online Test-time Adaptation, CVPR 2022",
        "setup": {
            "data": "sklearn digits, stratified 50/50 split per seed; frozen MLP of lame_digits.py trained on clean images",
            "corruptions": list(CORRUPTIONS), "scenarios": list(SCENARIOS), "batch_sizes": list(BATCH_SIZES),
            "lame": "affinity x k, max_steps=100; lame-rbf-k5 at batch 16 is the authors' default",
            "tent": "BN affine params, batch statistics, SGD momentum 0.9, one step per batch, continual",
            "tent_learning_rates": list(TENT_LRS), "stream_events": n_stream, "epochs": epochs, "seeds": seeds,
            "tuning": f"on the {VALIDATION} corruption in one scenario, tested on the other corruptions in each scenario, batch {DEFAULT_BATCH}",
        },  # fmt: skip
        "paper_mode": {"method": "lame-rbf-k5", "batch_size": DEFAULT_BATCH},
        "summary": summary(table),
        "cross_scenario": cross_scenario(table),
        "accuracy": table,
    }
    report["elapsed_seconds"] = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "lame_robustness.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    plot(report, out_dir / "lame_robustness.png")
    print(f"\n{'batch':>5} {'method':>16} {'iid gain':>9} {'non-iid gain':>13} {'worst':>7}")
    for batch, rows in report["summary"].items():
        for method in ("lame-rbf-k5", "lame-knn-k5", "lame-linear-k5", "tent-lr0.01"):
            r = rows[method]
            print(f"{batch:>5} {method:>16} {r['mean_gain_iid_scenarios']:9.3f} {r['mean_gain_noniid_scenarios']:13.3f} {r['worst_gain']:7.3f}")
    for family in ("lame", "tent"):
        c = report["cross_scenario"][family]
        print(f"{family}: chosen {c['chosen_on_validation']}, worst gain tuned elsewhere {c['worst_gain_when_tuned_on_another_scenario']:.3f}")
    print(f"wrote {path} in {report['elapsed_seconds']:.0f} s")
    return report


if __name__ == "__main__":
    main()
