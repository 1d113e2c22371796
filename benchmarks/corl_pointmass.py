"""Continual offline RL on the 2-D point mass: fine-tune, ER, ER + DBC, OER and multi-task.

Five tasks (goal directions, :mod:`streamlearn.learners.corl.pointmass`) arrive
one after another, each as 10,000 logged transitions of a noisy scripted
controller (``medium``). After each task every method is evaluated (10 episodes)
on every task seen so far, which gives the R matrix (R[i, j] = return on task j
after training through task i) and

    ACC = mean_j R[T, j]     BWT = mean_{j<T} (R[T, j] − R[j, j])     LA = mean_j R[j, j]

(LA, the return on a task right after learning it, shows how well the current
task is learned.) Returns are reported raw and normalised (0 = uniform random
policy, 100 = the scripted expert). Methods (ALGORITHMS.md §1):

- multi-task: TD3+BC on all data of the tasks seen so far (the upper bound);
- fine-tune: TD3+BC, nothing kept of old tasks;
- fine-tune (heads): the same with a head per task instead of a one-hot task input;
- ER-random: a random buffer per old task, cloned through the single actor;
- ER-random + DBC: the same buffers, cloned by a separate clone policy;
- OER: MBES buffers + DBC.

For every buffer the benchmark also measures how close the kept states lie to
the states the acting policy visits (mean distance to the nearest visited
state): what MBES is meant to improve.

Scaled to CPU: 2 × 64 MLPs, 2,000 TD3+BC steps per task (the paper: 2 × 256, far
more steps), a 5 × (2 × 64) transition ensemble trained 1,000 steps. Policies see
a one-hot task id as the public OER code does. Buffer sizes 100 and 1,000, three
seeds (a seed fixes the data, the initialisation and every random choice). Run
the full benchmark under the shared lock::

    flock /tmp/streamlearn-bench.lock python benchmarks/corl_pointmass.py

``--quick`` runs a tiny version in well under a minute.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from streamlearn.learners.corl import OER, TD3BC, TD3BCConfig, Transitions
from streamlearn.learners.corl.pointmass import PointMass

RESULTS = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass
class Settings:
    n_tasks: int = 5
    transitions_per_task: int = 10_000  # 200 episodes of 50 steps
    quality: str = "medium"
    steps_per_task: int = 2_000
    hidden: int = 64  # 2 x 64 MLPs for actor, clone policy and critics
    conditioning: str = "input"  # policies see a one-hot task id, as in the public OER code
    batch_size: int = 256
    dynamics_hidden: int = 64
    dynamics_steps: int = 1_000
    buffer_sizes: tuple[int, ...] = (100, 1_000)
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_episodes: int = 10


QUICK = Settings(transitions_per_task=500, steps_per_task=60, hidden=16, batch_size=64, dynamics_hidden=16,
                 dynamics_steps=30, buffer_sizes=(100,), seeds=(0,), eval_episodes=3, n_tasks=3)

#: Continual methods, as OER parameters.
METHODS = {
    "fine-tune": {"selection": "none", "dual_bc": False},
    "fine-tune (heads)": {"selection": "none", "dual_bc": False, "conditioning": "heads"},
    "ER-random": {"selection": "random", "dual_bc": False},
    "ER-random+DBC": {"selection": "random", "dual_bc": True},
    "OER (MBES+DBC)": {"selection": "mbes", "dual_bc": True},
}
#: Methods whose result does not depend on the buffer size (run once per seed).
BUFFERLESS = ("fine-tune", "fine-tune (heads)", "multi-task")


def task_name(k: int) -> str:
    return f"goal{k}"


def evaluate_row(env: PointMass, policy, n_seen: int, s: Settings, seed: int) -> list[float]:
    """Returns on tasks 0..n_tasks-1 (NaN for tasks not seen yet)."""
    return [
        env.evaluate(lambda o, j=j: policy(o, j), j, s.eval_episodes, seed=10_000 + seed)
        if j < n_seen
        else float("nan")
        for j in range(s.n_tasks)
    ]


def run_continual(env, datasets, params: dict, buffer_size: int, s: Settings, seed: int) -> tuple[np.ndarray, list]:
    """The R matrix, and per task the mean distance of its kept states to the states its policy visits."""
    learner = OER(
        env.obs_dim,
        env.act_dim,
        buffer_size=buffer_size,
        steps_per_task=s.steps_per_task,
        max_tasks=s.n_tasks,
        hidden=s.hidden,
        batch_size=s.batch_size,
        dynamics_hidden=s.dynamics_hidden,
        dynamics_steps=s.dynamics_steps,
        seed=seed,
        **{"conditioning": s.conditioning, **params},
    )
    rows, distances = [], []
    for i, data in enumerate(datasets):
        learner.train_task(task_name(i), data)
        rows.append(evaluate_row(env, lambda o, j: learner.act(o, task_name(j)), i + 1, s, seed))
        if learner.selection != "none":
            _, visited = env.rollout(lambda o: learner.act(o, task_name(i)), i, s.eval_episodes, seed=10_000 + seed)
            kept = learner.buffer(task_name(i))["obs"]
            gaps = np.sqrt(((kept[:, None, :] - visited[None, :, :]) ** 2).sum(-1)).min(1)
            distances.append(float(gaps.mean()))
    return np.array(rows), distances


def run_multitask(env, datasets, s: Settings, seed: int) -> np.ndarray:
    """TD3+BC on the union of all data seen so far; a head per task, the critic sees the task."""
    config = TD3BCConfig(hidden=s.hidden, batch_size=s.batch_size, conditioning=s.conditioning)
    agent = TD3BC(env.obs_dim, env.act_dim, s.n_tasks, config, seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(len(datasets)):
        union = Transitions.concat([Transitions.from_arrays(datasets[j], j) for j in range(i + 1)])
        agent.fit(union, s.steps_per_task, rng)
        rows.append(evaluate_row(env, agent.act, i + 1, s, seed))
    return np.array(rows)


def scores(r: np.ndarray) -> dict[str, float]:
    t = r.shape[0] - 1
    return {
        "ACC": float(np.mean(r[t, : t + 1])),
        "LA": float(np.mean(np.diag(r))),  # learning accuracy: return on each task right after learning it
        "BWT": float(np.mean([r[t, j] - r[j, j] for j in range(t)])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings, for a smoke test")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    parser.add_argument("--steps-per-task", type=int, help="override the TD3+BC steps per task")
    parser.add_argument("--out", default=str(RESULTS / "corl_pointmass.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = QUICK if args.quick else Settings()
    if args.seeds:
        s = dataclasses.replace(s, seeds=tuple(args.seeds))
    if args.steps_per_task:
        s = dataclasses.replace(s, steps_per_task=args.steps_per_task)
    env = PointMass(n_tasks=s.n_tasks)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    # Reference returns for normalisation (same evaluation episodes as the methods).
    reference = {}
    uniform = np.random.default_rng(0)
    for name, policy in (
        ("random", lambda o, j: uniform.uniform(-1, 1, size=(len(o), 2))),
        ("expert", lambda o, j: env.expert_action(o, j)),
    ):
        reference[name] = np.nanmean([evaluate_row(env, policy, s.n_tasks, s, seed) for seed in s.seeds], axis=0)

    def normalise(r: np.ndarray) -> np.ndarray:
        return 100 * (r - reference["random"]) / (reference["expert"] - reference["random"])

    runs = []  # one entry per (method, buffer size, seed)
    started = time.perf_counter()
    for seed in s.seeds:
        datasets = [
            env.dataset(k, s.transitions_per_task, s.quality, seed=1_000 * seed + k) for k in range(s.n_tasks)
        ]
        behaviour = [float(d["reward"].sum() / (len(d["reward"]) / env.horizon)) for d in datasets]
        jobs = [("multi-task", None)] + [
            (m, b) for m in METHODS for b in ((None,) if m in BUFFERLESS else s.buffer_sizes)
        ]
        for method, buffer_size in jobs:
            t0 = time.perf_counter()
            distances: list[float] = []
            if method == "multi-task":
                r = run_multitask(env, datasets, s, seed)
            else:
                r, distances = run_continual(env, datasets, METHODS[method], buffer_size or 1, s, seed)
            seconds = time.perf_counter() - t0
            rn = normalise(r)
            runs.append({
                "method": method,
                "buffer_size": buffer_size,
                "seed": seed,
                "R": r.tolist(),
                "R_normalised": rn.tolist(),
                **scores(r),
                **{f"{k}_normalised": v for k, v in scores(rn).items()},
                "buffer_distance": float(np.mean(distances)) if distances else None,
                "behaviour_return": behaviour,
                "seconds": seconds,
            })
            print(f"seed {seed} {method:17s} buffer {buffer_size!s:>5s}: "
                  f"ACC {runs[-1]['ACC_normalised']:6.1f}  BWT {runs[-1]['BWT_normalised']:6.1f}  "
                  f"LA {runs[-1]['LA_normalised']:6.1f}  ({seconds:.0f} s)",
                  flush=True)
    total = time.perf_counter() - started

    summary = summarise(runs, s)
    result = {
        "benchmark": "corl_pointmass",
        "settings": dataclasses.asdict(s),
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        "reference_returns": {k: v.tolist() for k, v in reference.items()},
        "summary": summary,
        "runs": runs,
        "total_seconds": total,
    }
    out.write_text(json.dumps(result, indent=1, allow_nan=True))
    plot(summary, runs, s, out.with_suffix(".png"))
    print(f"\nnormalised score (0 = random, 100 = expert), mean ± std over {len(s.seeds)} seeds; {total / 60:.1f} min")
    for row in summary:
        distance = row["buffer_distance_mean"]
        print(f"  {row['method']:17s} buffer {row['buffer_size']!s:>5s}: "
              f"ACC {row['ACC_mean']:6.1f} ± {row['ACC_std']:4.1f}   "
              f"BWT {row['BWT_mean']:6.1f} ± {row['BWT_std']:4.1f}   LA {row['LA_mean']:6.1f}"
              + ("" if distance is None else f"   buffer-to-policy distance {distance:.3f}"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def summarise(runs: list[dict], s: Settings) -> list[dict]:
    rows = []
    for method in ("multi-task", *METHODS):
        for b in (None,) if method in BUFFERLESS else s.buffer_sizes:
            sel = [r for r in runs if r["method"] == method and r["buffer_size"] == b]
            acc = [r["ACC_normalised"] for r in sel]
            bwt = [r["BWT_normalised"] for r in sel]
            distance = [r["buffer_distance"] for r in sel if r["buffer_distance"] is not None]
            rows.append({
                "method": method,
                "buffer_size": b,
                "ACC_mean": float(np.mean(acc)), "ACC_std": float(np.std(acc)),
                "BWT_mean": float(np.mean(bwt)), "BWT_std": float(np.std(bwt)),
                "ACC_raw_mean": float(np.mean([r["ACC"] for r in sel])),
                "BWT_raw_mean": float(np.mean([r["BWT"] for r in sel])),
                "LA_mean": float(np.mean([r["LA_normalised"] for r in sel])),
                "buffer_distance_mean": float(np.mean(distance)) if distance else None,
                "R_normalised_mean": np.mean([r["R_normalised"] for r in sel], axis=0).tolist(),
                "seconds_mean": float(np.mean([r["seconds"] for r in sel])),
            })
    return rows


def plot(summary: list[dict], runs: list[dict], s: Settings, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(16, 8.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    labels = [r["method"] + ("" if r["buffer_size"] is None else f"\nN={r['buffer_size']}") for r in summary]
    colours = ["C0" if r["buffer_size"] is None else ("C1" if r["buffer_size"] == min(s.buffer_sizes) else "C2")
               for r in summary]
    x = np.arange(len(summary))
    for ax, metric in zip(top.subplots(1, 2), ("ACC", "BWT"), strict=True):
        ax.bar(x, [r[f"{metric}_mean"] for r in summary], yerr=[r[f"{metric}_std"] for r in summary], capsize=3,
               color=colours)
        ax.set_xticks(x, labels, fontsize=7, rotation=30)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{metric} (normalised, mean ± std over {len(s.seeds)} seeds)")
    smallest = min(s.buffer_sizes)
    shown = [r for r in summary if r["buffer_size"] in (None, smallest)]
    for ax, row in zip(np.atleast_1d(bottom.subplots(1, len(shown))), shown, strict=True):
        image = ax.imshow(np.array(row["R_normalised_mean"], dtype=float), vmin=-60, vmax=100, cmap="viridis")
        ax.set_title(row["method"] + ("" if row["buffer_size"] is None else f" N={row['buffer_size']}"), fontsize=8)
        ax.set_xlabel("evaluated on task j", fontsize=7)
        ax.set_ylabel("after training task i", fontsize=7)
        ax.set_xticks(range(s.n_tasks))
        ax.set_yticks(range(s.n_tasks))
        ax.tick_params(labelsize=6)
    bottom.colorbar(image, shrink=0.8, label="normalised return")
    fig.suptitle("Continual offline RL on the 2-D point mass: ACC / BWT (top), mean R matrices (bottom)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
