"""Groupwise-regret experts vs one online ridge: the tables of Acharya et al. (ICLR 2024).

Reproduces the experiments of "Oracle Efficient Algorithms for Groupwise Regret"
(arXiv:2310.04652; setups as in github.com/krishnacharya/multidecomp) with
:class:`streamlearn.learners.groupwise.GroupwiseRegressor`:

- synthetic (the paper's §3 generator): x ~ U[0, 1]^20, groups shape
  (circle/square/triangle, p = .5/.3/.2) × colour (green/red, .6/.4), each
  group's label x·w_g + N(0, 0.16²) with w_g ~ U[0, 1]^20, the observed label
  the mean, min or max over the individual's two groups, min-max scaled; the
  five group indicators are features too (25 features, 6 experts);
- Medical costs (../shared/data/insurance.csv, 1,338 rows): charges min-max
  scaled; age, bmi, children min-max scaled, region one-hot and the 11 group
  indicators as features; groups age ≤35 / 36–50 / >50, BMI <18.5 / <25 / <30 /
  ≥30, smoker / non-smoker, male / female, plus always-on (12 experts).

The synthetic rows are the paper's own: the generator draws in the reference
code's order from the same seeded generators (its group sizes and best-fit SSEs
come out equal), and the 10 shuffles are the reference's (its seeds, in the row
order of ``DataFrame.sample(frac=1, random_state=seed)``). Each data set reports,
per group, the regret mean ± std over the shuffles (std with ddof = 0 as in the
paper's tables) of three rows, in this order:

- ``paper_mode``: the paper's algorithm as its tables measure it — experts
  unclipped (``clip_experts=False``), an expert drawn from AdaNormalHedge's p,
  charged the expected loss Σ p_i (ŷ_i − y)² of that draw
  (:meth:`GroupwiseRegressor.learn_encoded_with_loss`);
- ``baseline``: one online ridge (λ = 1) on all rows with the group indicators
  among its features, clipped to [0, 1];
- ``mixture``: the project's default, experts clipped to [0, 1] and the
  deterministic mixture Σ p_i ŷ_i as the prediction, charged its own squared loss.

Regret on a group = cumulative loss on the group's subsequence minus the
residual sum of squares of the best least-squares fit in hindsight on it. The
paper's numbers (its tables, from the reference repository) are stored next to
ours. For Medical costs the paper's best-fit SSEs are lower than what the same
features give on our copy of the data (12.10 vs 14.98 on all rows), so there only
the comparison with the baseline carries over, not the absolute values.

Throughput: events/s of learn + predict with 13 groups (12 declared + always-on,
5 awake per event) and 25 features, on one core (BLAS limited to one thread):
``predict_one`` then ``learn_one`` on dict events; the engine's path (``encode``
then ``learn_encoded``, which returns the prediction made before learning); the
whole processor (decode, test-then-train, regret statistics, river metrics,
outputs); one OnlineRidge for scale. Each is given per second of the process's
CPU time (the machine is shared, so wall-clock rates also count time spent
waiting for a core) and per wall-clock second. ``learn_one`` after
``predict_one`` on the same event reuses that prediction's work, so the public
pair costs about what the engine's path does.

The shuffles are independent: they go to ``--jobs`` worker processes (default
2, the benchmark machine's cores), results in task order; the throughput section
runs after them, alone. ``wall_clock`` records the wall-clock time and the CPU
time of all processes.

    flock /tmp/bench.lock python benchmarks/groupwise.py
    python benchmarks/groupwise.py --quick          # smaller, writes to a temporary directory
    python benchmarks/groupwise.py --export-medical data/medical.jsonl   # events for a copy of configs/groupwise.toml
                                                                         # with groups = MEDICAL_GROUPS
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # one core: set before NumPy loads its BLAS (not when a test imports this)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from streamlearn.datasets import shared_data  # noqa: E402
from streamlearn.learners.groupwise import ALWAYS_ON, GroupRegret, GroupwiseRegressor, OnlineRidge  # noqa: E402
from streamlearn.synthetic import overlapping_groups  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

#: The shuffling seeds of the reference code (bilevel/Groupwise_seedruns.py).
SEEDS = [473, 503, 623, 550, 692, 989, 617, 458, 301, 205]
#: Seed of the synthetic generator in the reference notebook.
SYNTHETIC_SEED = 21

MEDICAL_GROUPS = [
    "young", "middle", "old",
    "underweight", "healthy_weight", "overweight", "obese",
    "smoker", "non_smoker", "male", "female",
]  # fmt: skip

#: The paper's tables (tables/*.csv of the reference repository): group → (baseline regret mean,
#: std, its algorithm's regret mean, std, SSE of the best least-squares fit in hindsight).
PAPER = {
    "synthetic_mean": {
        "circle": (15.252, 0.217, 0.726, 0.089, 23.571), "square": (15.435, 0.130, 0.633, 0.058, 14.123),
        "triangle": (12.129, 0.104, 0.759, 0.040, 9.434), "green": (10.017, 0.150, -14.132, 0.193, 38.805),
        "red": (14.752, 0.156, -1.797, 0.166, 26.370), "always_on": (0.764, 0.058, -39.934, 0.099, 89.180),
    },
    "synthetic_min": {
        "circle": (21.622, 0.275, 0.807, 0.097, 63.488), "square": (64.211, 0.310, 0.942, 0.047, 15.168),
        "triangle": (12.467, 0.135, 0.567, 0.065, 26.374), "green": (14.549, 0.191, -43.104, 0.225, 97.420),
        "red": (21.638, 0.203, -16.692, 0.230, 69.723), "always_on": (1.039, 0.056, -94.944, 0.084, 202.291),
    },
    "synthetic_max": {
        "circle": (22.780, 0.324, 0.915, 0.069, 32.457), "square": (17.856, 0.142, 0.522, 0.078, 36.916),
        "triangle": (29.511, 0.222, 0.872, 0.051, 9.418), "green": (8.647, 0.205, -23.249, 0.238, 65.385),
        "red": (12.484, 0.222, -23.457, 0.290, 62.423), "always_on": (0.860, 0.076, -66.977, 0.126, 148.078),
    },
    "medical": {
        "young": (0.547, 0.141, -1.583, 0.182, 5.404), "middle": (0.376, 0.148, -0.972, 0.161, 3.336),
        "old": (0.437, 0.178, -0.643, 0.187, 3.131), "underweight": (0.157, 0.019, 0.112, 0.016, 0.027),
        "healthy_weight": (1.588, 0.145, 0.364, 0.065, 1.004), "overweight": (1.547, 0.171, 0.431, 0.065, 1.837),
        "obese": (3.420, 0.307, 1.246, 0.115, 3.651), "smoker": (5.065, 0.168, 1.474, 0.093, 0.900),
        "non_smoker": (1.699, 0.155, 0.732, 0.130, 5.567), "male": (0.647, 0.209, -1.749, 0.211, 6.112),
        "female": (0.593, 0.240, -1.569, 0.242, 5.879), "always_on": (1.129, 0.091, -3.429, 0.134, 12.102),
    },
}  # fmt: skip


# --------------------------------------------------------------------------- data


class Dataset:
    """Rows as arrays: features (named), label in [0, 1], group membership (always-on last)."""

    def __init__(self, name: str, X: np.ndarray, features: list[str], y: np.ndarray, groups: list[str], member: np.ndarray):
        self.name, self.X, self.features, self.y = name, X, features, y
        self.groups, self.member = groups, member  # member: (n, len(groups) + 1) bool

    def events(self, order: np.ndarray | None = None):
        """The rows as streamlearn events ``{"x": ..., "y": ...}`` (indicators as booleans)."""
        indicator = set(self.features) & set(self.groups)
        for i in range(len(self.y)) if order is None else order:
            x = {f: (bool(v) if f in indicator else float(v)) for f, v in zip(self.features, self.X[i].tolist(), strict=True)}
            yield {"x": x, "y": float(self.y[i])}


def _minmax(a: np.ndarray) -> np.ndarray:
    return (a - a.min(axis=0)) / (a.max(axis=0) - a.min(axis=0))


def synthetic(n: int, aggregate: str, seed: int = SYNTHETIC_SEED, d: int = 20, noise: float = 0.16) -> Dataset:
    """The paper's §3 generator (:func:`streamlearn.synthetic.overlapping_groups`); the same
    seed gives the same rows for every aggregation, and with n = 100,000 the paper's rows
    (its group sizes 49,857 / 30,044 / 20,099 / 59,985 / 40,015 come out exactly)."""
    return Dataset(f"synthetic_{aggregate}", *overlapping_groups(n, aggregate, seed, d, noise))


def medical(path: Path | None = None) -> Dataset:
    with open(path or shared_data("insurance.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    age = np.array([float(r["age"]) for r in rows])
    bmi = np.array([float(r["bmi"]) for r in rows])
    children = np.array([float(r["children"]) for r in rows])
    indicators = {
        "young": age <= 35, "middle": (age > 35) & (age <= 50), "old": age > 50,
        "underweight": bmi < 18.5, "healthy_weight": (bmi >= 18.5) & (bmi < 25),
        "overweight": (bmi >= 25) & (bmi < 30), "obese": bmi >= 30,
        "smoker": np.array([r["smoker"] == "yes" for r in rows]),
        "non_smoker": np.array([r["smoker"] == "no" for r in rows]),
        "male": np.array([r["sex"] == "male" for r in rows]),
        "female": np.array([r["sex"] == "female" for r in rows]),
    }  # fmt: skip
    regions = sorted({r["region"] for r in rows})
    columns = {"age": _minmax(age), "bmi": _minmax(bmi), "children": _minmax(children)}
    columns |= {f"region_{g}": np.array([r["region"] == g for r in rows], dtype=float) for g in regions}
    columns |= {g: indicators[g].astype(float) for g in MEDICAL_GROUPS}
    member = np.column_stack([indicators[g] for g in MEDICAL_GROUPS] + [np.ones(len(rows), dtype=bool)])
    y = _minmax(np.array([float(r["charges"]) for r in rows]))
    return Dataset("medical", np.column_stack(list(columns.values())), list(columns), y, MEDICAL_GROUPS, member)


# --------------------------------------------------------------------------- runs


def shuffle(n: int, seed: int) -> np.ndarray:
    """The row order of the reference's ``DataFrame.sample(frac=1, random_state=seed)``."""
    return np.random.RandomState(seed).permutation(n)


def run_groupwise(data: Dataset, order: np.ndarray, clip_experts: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Test-then-train over the rows in ``order``: the mixture's predictions and the
    expected loss of sampling an expert, per row.

    Every row has every feature, so after ``extend_features`` on the first
    event the rows, put in the learner's feature order, go straight to the
    engine's path (which returns what was predicted before learning), without building dicts.
    """
    model = GroupwiseRegressor(groups=data.groups, l2=1.0, clip=(0.0, 1.0), clip_experts=clip_experts)
    model.extend_features(next(data.events(order[:1]))["x"])
    columns = [data.features.index(f) for f in model.features]
    X, y = data.X[order][:, columns], data.y[order]
    experts = [np.flatnonzero(row) for row in data.member[order]]  # always-on is last in both
    learn = model.learn_encoded_with_loss
    return np.array([learn(X[t], experts[t], float(y[t])) for t in range(len(order))]).T


def run_baseline(data: Dataset, order: np.ndarray) -> np.ndarray:
    """Test-then-train predictions of one OnlineRidge (λ = 1, clipped to [0, 1]) on all rows."""
    model = OnlineRidge(l2=1.0, clip=(0.0, 1.0))
    preds = np.empty(len(order))
    for t, event in enumerate(data.events(order)):
        preds[t] = model.predict_one(event["x"])
        model.learn_one(event["x"], event["y"])
    return preds


def regret_curves(data: Dataset, order: np.ndarray, losses: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group regret, charging each row ``losses``, after each of ``points`` equal chunks
    of the stream (points, groups), and the SSE of each group's best least-squares fit in hindsight."""
    metric = GroupRegret([*data.groups, ALWAYS_ON])
    curve = []
    for chunk in np.array_split(np.arange(len(order)), points):
        rows = order[chunk]
        metric.update_many_losses(data.X[rows], data.y[rows], losses[chunk], data.member[rows])
        curve.append(metric.regret())
    return np.array(curve), metric.best_in_hindsight()


#: The rows of each table, paper mode first: name → (label, how the row's per-event losses are made).
METHODS = {
    "paper_mode": "groupwise experts, paper mode: unclipped experts, expected loss of sampling one",
    "baseline": "online ridge on all rows (baseline)",
    "mixture": "groupwise experts, deterministic mixture of clipped experts (project default)",
}


def method_losses(method: str, data: Dataset, order: np.ndarray) -> np.ndarray:
    """Each row's loss under ``method`` (see :data:`METHODS`), test-then-train over ``order``."""
    y = data.y[order]
    if method == "paper_mode":
        return run_groupwise(data, order, clip_experts=False)[1]
    preds = run_groupwise(data, order)[0] if method == "mixture" else run_baseline(data, order)
    return (preds - y) ** 2


@functools.lru_cache(maxsize=None)
def load(name: str, n_synthetic: int) -> Dataset:
    """A data set by name (``synthetic_<aggregate>`` with ``n_synthetic`` rows, or ``medical``), once per process."""
    return medical() if name == "medical" else synthetic(n_synthetic, name.removeprefix("synthetic_"))


def seed_run(task: tuple[str, int, int, int]) -> dict:
    """One shuffle of one data set (a task for a worker process): each method's regret curve
    and seconds, and the SSE of each group's best fit in hindsight."""
    name, n_synthetic, seed, points = task
    data = load(name, n_synthetic)
    order = shuffle(len(data.y), seed)
    out = {"curves": {}, "seconds": {}}
    for method in METHODS:
        t0 = time.perf_counter()
        losses = method_losses(method, data, order)
        out["seconds"][method] = time.perf_counter() - t0
        out["curves"][method], out["hindsight"] = regret_curves(data, order, losses, points)
    return out


def experiment(data: Dataset, seeds: list[int], points: int, runs: list[dict]) -> dict:
    """The tables of one data set from its ``seed_run`` results (one per seed, in order)."""
    names = [*data.groups, ALWAYS_ON]
    curves = {m: [run["curves"][m] for run in runs] for m in METHODS}
    hindsight = [run["hindsight"] for run in runs]
    seconds = {m: sum(run["seconds"][m] for run in runs) for m in METHODS}
    final = {m: np.array(c)[:, -1, :] for m, c in curves.items()}  # (seeds, groups)
    hindsight = np.array(hindsight)
    paper = PAPER.get(data.name) if len(data.y) == (100_000 if data.name.startswith("synthetic") else 1338) else None
    table = []
    for g, name in enumerate(names):
        row = {"group": name, "size": int(data.member[:, g].sum())}
        for method in METHODS:
            row[f"{method}_mean"] = float(final[method][:, g].mean())
            row[f"{method}_std"] = float(final[method][:, g].std())
        row["best_in_hindsight_sse"] = float(hindsight[:, g].mean())
        if paper:
            keys = ("baseline_mean", "baseline_std", "ours_mean", "ours_std", "best_in_hindsight_sse")
            row["paper"] = dict(zip(keys, paper[name], strict=True))
        table.append(row)
    lower = {m: f"{sum(r[f'{m}_mean'] < r['baseline_mean'] for r in table)}/{len(table)}" for m in ("paper_mode", "mixture")}
    out = {
        "rows": len(data.y),
        "features": len(data.features),
        "experts": len(names),
        "shuffles": len(seeds),
        "seeds": seeds,
        "methods": METHODS,
        "groups": table,
        "groups_with_lower_regret_than_baseline": lower,
        "events_per_second": {m: len(seeds) * len(data.y) / s for m, s in seconds.items()},
        "curves": {
            "fraction_of_stream": (np.cumsum([len(c) for c in np.array_split(np.arange(len(data.y)), points)]) / len(data.y)).tolist(),
            **{f"{m}_mean": np.array(c).mean(axis=0).T.round(6).tolist() for m, c in curves.items()},
        },
    }
    if paper:
        ours = np.array([r["paper_mode_mean"] for r in table])
        theirs = np.array([r["paper"]["ours_mean"] for r in table])
        base_ours = np.array([r["baseline_mean"] for r in table])
        base_theirs = np.array([r["paper"]["baseline_mean"] for r in table])
        out["paper_comparison"] = {
            "max_abs_difference_paper_mode_vs_paper": float(np.abs(ours - theirs).max()),
            "max_abs_difference_baseline_vs_paper": float(np.abs(base_ours - base_theirs).max()),
        }
    return out


# --------------------------------------------------------------------------- throughput


def throughput(n_events: int, repeats: int = 3) -> dict:
    """events/s with 13 groups (4 attributes of 3, 2, 2, 5 levels + always-on) and 25 features."""
    from streamlearn.engine.processor import Item
    from streamlearn.engine.processors.groupwise import GroupwiseProcessor

    rng = np.random.default_rng(0)
    levels = [3, 2, 2, 5]
    names = [f"a{a}_{level}" for a, count in enumerate(levels) for level in range(count)]
    offsets = np.cumsum([0, *levels[:-1]])
    X = rng.uniform(0.0, 1.0, (n_events, 25))
    picks = offsets + rng.integers(0, levels, size=(n_events, len(levels)))
    y = rng.uniform(0.0, 1.0, n_events)
    events = [
        ({f"f{k:02d}": v for k, v in enumerate(X[t].tolist())}, [names[i] for i in picks[t]], float(y[t]))
        for t in range(n_events)
    ]

    def timed(run) -> tuple[float, float]:
        """(events per wall-clock second, events per second of this process's CPU time)."""
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        return n_events / (time.perf_counter() - wall), n_events / (time.process_time() - cpu)

    def dict_api() -> tuple[float, float]:
        model = GroupwiseRegressor(groups=names)

        def run():
            for x, groups, label in events:
                model.predict_one(x, groups)
                model.learn_one(x, label, groups)

        return timed(run)

    def encoded() -> tuple[float, float]:
        model = GroupwiseRegressor(groups=names)
        model.extend_features(events[0][0])

        def run():
            for x, groups, label in events:
                model.learn_encoded(*model.encode(x, groups), label)

        return timed(run)

    def processor() -> tuple[float, float]:
        proc = GroupwiseProcessor(GroupwiseRegressor(groups=names), emit=True)
        raw = [{"x": x, "groups": groups, "y": label} for x, groups, label in events]

        def run():
            items = [Item({"row": i}, proc.decode(event)) for i, event in enumerate(raw)]
            for start in range(0, n_events, 256):
                proc.process(items[start : start + 256])
            proc.metrics()

        return timed(run)

    def ridge_only() -> tuple[float, float]:
        model = OnlineRidge()

        def run():
            for x, _, label in events:
                model.predict_one(x)
                model.learn_one(x, label)

        return timed(run)

    out = {"events": n_events, "groups": len(names) + 1, "awake_per_event": len(levels) + 1, "features": 25}
    for name, fn in (
        ("predict_one_then_learn_one", dict_api),
        ("encode_then_learn_encoded", encoded),
        ("processor_with_regret_tracking", processor),
        ("online_ridge_alone", ridge_only),
    ):
        runs = [fn() for _ in range(repeats)]
        wall, cpu = zip(*runs, strict=True)
        out[name] = {
            "cpu_time_median": float(np.median(cpu)),
            "wall_clock_median": float(np.median(wall)),
            "cpu_time_runs": [round(r) for r in cpu],
            "wall_clock_runs": [round(r) for r in wall],
        }
    return out


# --------------------------------------------------------------------------- output


def plot(results: dict, out_dir: Path, stem: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = results["datasets"]
    files = []
    fig, axes = plt.subplots(len(sets), 1, figsize=(10, 3.2 * len(sets)), squeeze=False)
    for ax, (name, res) in zip(axes[:, 0], sets.items(), strict=True):
        groups = [r["group"] for r in res["groups"]]
        pos = np.arange(len(groups))
        for k, method in enumerate(METHODS):
            ax.bar(
                pos + (k - 1) * 0.27, [r[f"{method}_mean"] for r in res["groups"]], 0.27,
                yerr=[r[f"{method}_std"] for r in res["groups"]], capsize=2, color=f"C{k}", label=METHODS[method],
            )  # fmt: skip
        if "paper" in res["groups"][0]:
            ax.scatter(pos - 0.27, [r["paper"]["ours_mean"] for r in res["groups"]], marker="_", s=200, color="k", zorder=3, label="paper's table")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(pos, groups, rotation=30, ha="right")
        ax.set_ylabel("regret")
        ax.set_title(f"{name}: {res['rows']} rows, {res['shuffles']} shuffles (mean ± std)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / f"{stem}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path.name)

    fig, axes = plt.subplots(len(sets), 1, figsize=(10, 3.2 * len(sets)), squeeze=False)
    for ax, (name, res) in zip(axes[:, 0], sets.items(), strict=True):
        frac = res["curves"]["fraction_of_stream"]
        palette = plt.cm.tab10 if len(res["groups"]) <= 10 else plt.cm.tab20
        for g, row in enumerate(res["groups"]):
            colour = palette(g % palette.N)
            ax.plot(frac, res["curves"]["baseline_mean"][g], color=colour, ls="--", lw=1)
            ax.plot(frac, res["curves"]["paper_mode_mean"][g], color=colour, lw=1.5, label=row["group"])
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("fraction of the stream")
        ax.set_ylabel("regret (mean over shuffles)")
        ax.set_title(f"{name}: groupwise experts, paper mode (solid) vs baseline (dashed)")
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    path = out_dir / f"{stem}_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path.name)
    return files


def export_medical(path: Path) -> None:
    """Write the Medical costs rows as events for ``configs/groupwise.toml``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i, event in enumerate(medical().events()):
            f.write(json.dumps({"id": i, **event}) + "\n")
    print(f"wrote {path}")


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 synthetic rows, 2 shuffles (well under a minute)")
    parser.add_argument("--out", type=Path, help="output directory (default: benchmarks/results; a temporary one with --quick)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for the shuffles (default 2: the benchmark machine's cores)")
    parser.add_argument("--export-medical", type=Path, metavar="PATH", help="only write the Medical costs events as JSONL")
    args = parser.parse_args(argv)
    if args.export_medical:
        export_medical(args.export_medical)
        return None
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="groupwise-bench-")) if args.quick else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_synthetic, seeds, n_throughput = (5_000, SEEDS[:2], 3_000) if args.quick else (100_000, SEEDS, 20_000)
    points = 20 if args.quick else 50

    started, cpu_started = time.perf_counter(), _cpu_seconds()
    names = ["synthetic_mean", "synthetic_min", "synthetic_max", "medical"]
    tasks = [(name, n_synthetic, seed, points) for name in names for seed in seeds]
    # the shuffles are independent: spread them over worker processes (results in task order)
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(seed_run, tasks))
    datasets = {}
    for k, name in enumerate(names):
        data = load(name, n_synthetic)
        datasets[name] = experiment(data, seeds, points, runs[k * len(seeds) : (k + 1) * len(seeds)])
        print(f"{name}: lower regret than the baseline on {datasets[name]['groups_with_lower_regret_than_baseline']}", flush=True)
    experiments_seconds = time.perf_counter() - started
    speed = throughput(n_throughput)

    results = {
        "benchmark": "groupwise",
        "quick": args.quick,
        "paper": "Acharya et al., Oracle Efficient Algorithms for Groupwise Regret, ICLR 2024 (arXiv:2310.04652)",
        "setup": {
            "l2": 1.0, "clip": [0.0, 1.0], "std": "ddof=0 over shuffles, as in the paper",
            "regret": "cumulative squared loss on the group's subsequence minus the SSE of the best least-squares fit in hindsight on it",
            "baseline": "one OnlineRidge (l2 = 1, clipped to [0, 1]) on all rows, group indicators among its features",
        },  # fmt: skip
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "processor": platform.processor() or platform.machine(), "blas_threads": 1},
        "datasets": datasets,
        "throughput": speed,
        "seconds": time.perf_counter() - started,
        "wall_clock": {
            "jobs": args.jobs,
            "experiments_seconds": experiments_seconds,
            "total_seconds": time.perf_counter() - started,
            "cpu_seconds_all_processes": _cpu_seconds() - cpu_started,
            "load_average_1_5_15_min_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    }
    stem = "groupwise"
    results["plots"] = plot(results, out_dir, stem)
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")

    print(f"\n{'data set':15s} {'group':15s} {'size':>6s} {'paper mode':>16s} {'baseline':>16s} {'mixture':>16s} {'hindsight':>9s}   paper: ours / base / hindsight")
    for name, res in datasets.items():
        for r in res["groups"]:
            paper = r.get("paper")
            ref = f"{paper['ours_mean']:7.3f} / {paper['baseline_mean']:7.3f} / {paper['best_in_hindsight_sse']:7.3f}" if paper else ""
            cells = " ".join(f"{r[f'{m}_mean']:8.3f} ±{r[f'{m}_std']:6.3f}" for m in METHODS)
            print(f"{name:15s} {r['group']:15s} {r['size']:6d} {cells} {r['best_in_hindsight_sse']:9.3f}   {ref}")
    print("\nthroughput (events/s, 13 groups, 25 features, one core; per CPU second / per wall-clock second):")
    for key, value in speed.items():
        if isinstance(value, dict):
            print(f"  {key:32s} {value['cpu_time_median']:10.0f} {value['wall_clock_median']:10.0f}")
    print(f"\nwrote {path} and {', '.join(results['plots'])} in {results['seconds']:.0f} s")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() is not None or "--export-medical" in sys.argv else 1)
