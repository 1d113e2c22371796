"""Continual offline RL on the 2-D point mass: fine-tune, ER, ER + DBC, OER and multi-task.

Five tasks (:mod:`streamlearn.learners.corl.pointmass`) arrive one after another,
each as 10,000 logged transitions (200 episodes of 50 steps). The data are
*mixed*, as the issue asks: a share ``random_share`` (default 0.5) of the
episodes come from a uniform random policy, the others from the noisy scripted
controller (``medium``) — like D4RL's medium-replay data. Two task families run
(``--families``):

- ``directions`` (the issue's benchmark): goal directions; a good policy pushes
  along its direction nearly everywhere, so its action hardly depends on the state;
- ``positions``: goal points at distance 2; a good policy accelerates, brakes and
  holds, so its action depends on the state — where the states a buffer keeps
  should matter most.

After each task every method is evaluated (10 episodes) on every task seen so
far, which gives the R matrix (R[i, j] = return on task j after training through
task i) and

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

For every buffer the benchmark also measures what it holds, right after its task
is learned: the share of random-policy transitions in it, the share MBES had to
pad at random because no walk reached them, the mean distance of its
states to the nearest state the acting policy visits (``buffer_distance``: does it
lie on the policy's trajectories — what MBES is meant to improve) and the mean
distance of the visited states to the nearest kept state (``coverage_distance``:
does it cover them). For every continual method, ``action_drift`` measures
forgetting in action space: how far the actions on an old task's own visited
states moved by the end (mean over old tasks).

Scaled to CPU: 2 × 64 MLPs, 2,000 TD3+BC steps per task (the paper: 2 × 256, far
more steps), a 5 × (2 × 64) transition ensemble trained 1,000 steps. Policies
(actor and clone) see a one-hot task id, the public OER code's single-head option
(its default, and ALGORITHMS.md's clone, is a head per task on a shared trunk;
"fine-tune (heads)" shows how much heads alone protect old tasks). Buffer sizes
100 and 1,000; ER-random+DBC and OER also at 10 on the directions family (10 of
10,000 is the paper's ratio of 1,000 to D4RL's 1M). Three seeds (a seed fixes the
data, the initialisation and every random choice). Run the full benchmark under
the shared lock::

    flock /tmp/streamlearn-bench.lock python benchmarks/corl_pointmass.py

``--quick`` runs a tiny version in well under a minute (written to a temporary
directory unless ``--out`` says where).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from streamlearn.learners.corl import OER, TD3BC, TD3BCConfig, Transitions
from streamlearn.learners.corl.pointmass import GOALS, QUALITIES, PointMass

RESULTS = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass
class Settings:
    n_tasks: int = 5
    transitions_per_task: int = 10_000  # 200 episodes of 50 steps
    quality: str = "mixed"  # behaviour data: "mixed" = random_share random episodes, the rest medium
    random_share: float = 0.5
    families: tuple[str, ...] = ("directions", "positions")  # task families (PointMass goals)
    steps_per_task: int = 2_000
    hidden: int = 64  # 2 x 64 MLPs for actor, clone policy and critics
    conditioning: str = "input"  # policies see a one-hot task id (the public OER code's single-head option)
    batch_size: int = 256
    dynamics_hidden: int = 64
    dynamics_steps: int = 1_000
    buffer_sizes: tuple[int, ...] = (100, 1_000)
    # A smaller buffer for the two methods that differ only in selection, on the family: 10 of 10,000
    # is the paper's ratio (1,000 of D4RL's 1M transitions); both families do not fit the time budget.
    small_buffer: int = 10
    small_buffer_families: tuple[str, ...] = ("directions",)
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_episodes: int = 10


QUICK = Settings(transitions_per_task=500, steps_per_task=60, hidden=16, batch_size=64, dynamics_hidden=16,
                 dynamics_steps=30, buffer_sizes=(100,), small_buffer=10, seeds=(0,), eval_episodes=3, n_tasks=3)

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
#: Methods also run with the small buffer: the same DBC, random or MBES selection.
SMALL_BUFFER_METHODS = ("ER-random+DBC", "OER (MBES+DBC)")
#: What is measured about each kept buffer (right after its task), averaged over tasks.
BUFFER_STATS = ("buffer_distance", "coverage_distance", "buffer_random_share", "buffer_padded_share")


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


def buffer_stats(kept: dict[str, np.ndarray], visited: np.ndarray, data: dict[str, np.ndarray]) -> dict[str, float]:
    """How a kept buffer relates to the states its task's acting policy visits, and to the behaviour data."""
    gaps = np.sqrt(((kept["obs"][:, None, :] - visited[None, :, :]) ** 2).sum(-1))
    is_random = {row.tobytes(): flag for row, flag in zip(data["obs"], data["random_policy"], strict=True)}
    return {
        "buffer_distance": float(gaps.min(1).mean()),  # kept state → nearest visited state
        "coverage_distance": float(gaps.min(0).mean()),  # visited state → nearest kept state
        "buffer_random_share": float(np.mean([is_random[row.tobytes()] for row in kept["obs"]])),
    }


def run_continual(env, datasets, params: dict, buffer_size: int, s: Settings, seed: int) -> tuple[np.ndarray, dict]:
    """The R matrix, the buffer statistics (:func:`buffer_stats`) averaged over the tasks, and the action drift.

    ``action_drift``: for every old task, the mean distance between the actions taken
    after the last task and right after its own, on the states its acting policy
    visited right after its own task; averaged over the old tasks.
    """
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
    rows, stats, visits = [], [], []
    for i, data in enumerate(datasets):
        task = task_name(i)
        learner.train_task(task, data)
        rows.append(evaluate_row(env, lambda o, j: learner.act(o, task_name(j)), i + 1, s, seed))
        _, visited = env.rollout(lambda o: learner.act(o, task), i, s.eval_episodes, seed=10_000 + seed)
        visited = visited.astype(np.float32)
        visits.append((visited, learner.act(visited, task)))
        if learner.selection != "none":
            kept = learner.buffer(task)
            padded = learner.summary(task)["padded"] / len(kept["reward"])
            stats.append({**buffer_stats(kept, visited, data), "buffer_padded_share": padded})
    drift = [np.linalg.norm(learner.act(v, task_name(j)) - a, axis=1).mean() for j, (v, a) in enumerate(visits[:-1])]
    summary = {k: float(np.mean([t[k] for t in stats])) for k in BUFFER_STATS} if stats else {}
    return np.array(rows), {**summary, "action_drift": float(np.mean(drift))}


def run_multitask(env, datasets, s: Settings, seed: int) -> np.ndarray:
    """TD3+BC on the union of all data seen so far; the policy and the critic see the task."""
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


def method_buffers(s: Settings, family: str) -> list[tuple[str, int | None]]:
    """The (method, buffer size) pairs run on a family, in report order."""
    pairs: list[tuple[str, int | None]] = [("multi-task", None)]
    for method in METHODS:
        sizes = list(s.buffer_sizes)
        if method in SMALL_BUFFER_METHODS and family in s.small_buffer_families:
            sizes = [s.small_buffer, *sizes]
        pairs += [(method, None)] if method in BUFFERLESS else [(method, b) for b in sizes]
    return pairs


def run_family(family: str, s: Settings) -> tuple[dict, list[dict]]:
    """Every method on one task family: the reference returns and one run per (method, buffer size, seed)."""
    env = PointMass(n_tasks=s.n_tasks, goals=family)
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

    runs = []
    for seed in s.seeds:
        datasets = [
            env.dataset(k, s.transitions_per_task, s.quality, seed=1_000 * seed + k, random_share=s.random_share)
            for k in range(s.n_tasks)
        ]
        behaviour = normalise(np.array([d["reward"].sum() / (len(d["reward"]) / env.horizon) for d in datasets]))
        for method, buffer_size in method_buffers(s, family):
            t0 = time.perf_counter()
            stats: dict = {}
            if method == "multi-task":
                r = run_multitask(env, datasets, s, seed)
            else:
                r, stats = run_continual(env, datasets, METHODS[method], buffer_size or 1, s, seed)
            seconds = time.perf_counter() - t0
            rn = normalise(r)
            runs.append({
                "family": family,
                "method": method,
                "buffer_size": buffer_size,
                "seed": seed,
                "R": r.tolist(),
                "R_normalised": rn.tolist(),
                **scores(r),
                **{f"{k}_normalised": v for k, v in scores(rn).items()},
                **{k: stats.get(k) for k in (*BUFFER_STATS, "action_drift")},
                "behaviour_return_normalised": behaviour.tolist(),
                "seconds": seconds,
            })
            print(f"{family} seed {seed} {method:17s} buffer {buffer_size!s:>5s}: "
                  f"ACC {runs[-1]['ACC_normalised']:6.1f}  BWT {runs[-1]['BWT_normalised']:6.1f}  "
                  f"LA {runs[-1]['LA_normalised']:6.1f}  ({seconds:.0f} s)",
                  flush=True)
    return {k: v.tolist() for k, v in reference.items()}, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings, for a smoke test")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    parser.add_argument("--steps-per-task", type=int, help="override the TD3+BC steps per task")
    parser.add_argument("--families", nargs="+", choices=GOALS, help="override the task families")
    parser.add_argument("--quality", choices=QUALITIES, help="override the behaviour data (default: mixed)")
    parser.add_argument("--random-share", type=float, help="override the share of random episodes of mixed data")
    parser.add_argument("--out", help="output JSON (default: benchmarks/results/corl_pointmass.json; "
                                      "a temporary directory with --quick); the PNG goes next to it")
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = QUICK if args.quick else Settings()
    overrides = {"seeds": tuple(args.seeds) if args.seeds else None, "steps_per_task": args.steps_per_task,
                 "families": tuple(args.families) if args.families else None, "quality": args.quality,
                 "random_share": args.random_share}
    s = dataclasses.replace(s, **{k: v for k, v in overrides.items() if v is not None})
    if args.out:
        out = Path(args.out)
    else:  # a quick smoke test must not overwrite the full results
        out = (Path(tempfile.mkdtemp(prefix="corl-pointmass-")) if args.quick else RESULTS) / "corl_pointmass.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    reference, runs = {}, []
    for family in s.families:
        reference[family], family_runs = run_family(family, s)
        runs += family_runs
    total = time.perf_counter() - started

    summary = summarise(runs, s)
    result = {
        "benchmark": "corl_pointmass",
        "settings": dataclasses.asdict(s),
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        "reference_returns": reference,
        "summary": summary,
        "runs": runs,
        "total_seconds": total,
    }
    out.write_text(json.dumps(result, indent=1, allow_nan=True))
    plot(summary, s, out.with_suffix(".png"))
    print(f"\n{s.quality} data (random_share {s.random_share}); normalised score (0 = random, 100 = expert), "
          f"mean ± std over {len(s.seeds)} seeds; {total / 60:.1f} min")
    for family in s.families:
        print(f"{family}:")
        for row in (r for r in summary if r["family"] == family):
            drift = row["action_drift_mean"]
            extra = "" if row["buffer_distance_mean"] is None else (
                f"  kept→visited {row['buffer_distance_mean']:.3f}  visited→kept {row['coverage_distance_mean']:.3f}"
                f"  random share {row['buffer_random_share_mean']:.2f}  padded {row['buffer_padded_share_mean']:.2f}")
            print(f"  {row['method']:17s} buffer {row['buffer_size']!s:>5s}: "
                  f"ACC {row['ACC_mean']:6.1f} ± {row['ACC_std']:4.1f}   "
                  f"BWT {row['BWT_mean']:6.1f} ± {row['BWT_std']:4.1f}   LA {row['LA_mean']:6.1f}"
                  + ("" if drift is None else f"  drift {drift:.3f}") + extra)
    print(f"wrote {out} and {out.with_suffix('.png')}")


def summarise(runs: list[dict], s: Settings) -> list[dict]:
    rows = []
    for family in s.families:
        for method, b in method_buffers(s, family):
            sel = [r for r in runs if r["family"] == family and r["method"] == method and r["buffer_size"] == b]
            acc = [r["ACC_normalised"] for r in sel]
            bwt = [r["BWT_normalised"] for r in sel]
            la = [r["LA_normalised"] for r in sel]
            rows.append({
                "family": family,
                "method": method,
                "buffer_size": b,
                "ACC_mean": float(np.mean(acc)), "ACC_std": float(np.std(acc)),
                "BWT_mean": float(np.mean(bwt)), "BWT_std": float(np.std(bwt)),
                "LA_mean": float(np.mean(la)), "LA_std": float(np.std(la)),
                "ACC_raw_mean": float(np.mean([r["ACC"] for r in sel])),
                "BWT_raw_mean": float(np.mean([r["BWT"] for r in sel])),
                **{f"{k}_mean": float(np.mean([r[k] for r in sel])) if sel[0][k] is not None else None
                   for k in (*BUFFER_STATS, "action_drift")},
                "R_normalised_mean": np.mean([r["R_normalised"] for r in sel], axis=0).tolist(),
                "seconds_mean": float(np.mean([r["seconds"] for r in sel])),
            })
    return rows


def plot(summary: list[dict], s: Settings, path: Path) -> None:
    """Per task family: ACC / BWT / LA bars and the mean R matrices at the main buffer size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(20, 8.5 * len(s.families)), layout="constrained")
    for family, panel in zip(s.families, np.atleast_1d(fig.subfigures(len(s.families), 1)), strict=True):
        rows = [r for r in summary if r["family"] == family]
        top, bottom = panel.subfigures(2, 1)
        labels = [r["method"] + ("" if r["buffer_size"] is None else f"\nN={r['buffer_size']}") for r in rows]
        sizes = sorted({s.small_buffer, *s.buffer_sizes})  # one colour per buffer size in every family
        colours = ["C0" if r["buffer_size"] is None else f"C{1 + sizes.index(r['buffer_size'])}" for r in rows]
        x = np.arange(len(rows))
        for ax, metric in zip(top.subplots(1, 3), ("ACC", "BWT", "LA"), strict=True):
            ax.bar(x, [r[f"{metric}_mean"] for r in rows], yerr=[r[f"{metric}_std"] for r in rows], capsize=3,
                   color=colours)
            ax.set_xticks(x, labels, fontsize=7, rotation=35)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title(f"goal {family}: {metric} (normalised, mean ± std over {len(s.seeds)} seeds)", fontsize=9)
        shown = [r for r in rows if r["buffer_size"] in (None, min(s.buffer_sizes))]
        for ax, row in zip(np.atleast_1d(bottom.subplots(1, len(shown))), shown, strict=True):
            image = ax.imshow(np.array(row["R_normalised_mean"], dtype=float), vmin=-60, vmax=100, cmap="viridis")
            ax.set_title(row["method"] + ("" if row["buffer_size"] is None else f" N={row['buffer_size']}"),
                         fontsize=8)
            ax.set_xlabel("evaluated on task j", fontsize=7)
            ax.set_ylabel("after training task i", fontsize=7)
            ax.set_xticks(range(s.n_tasks))
            ax.set_yticks(range(s.n_tasks))
            ax.tick_params(labelsize=6)
        bottom.colorbar(image, shrink=0.8, label=f"normalised return ({family})")
    fig.suptitle(f"Continual offline RL on the 2-D point mass, {s.quality} data (random share {s.random_share}): "
                 "ACC / BWT / LA and mean R matrices per task family")
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
