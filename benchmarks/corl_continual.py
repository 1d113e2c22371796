"""Continual offline RL with small buffers on goal-reaching tasks: where the choice of buffer matters (issue 17).

Tasks: the 2-D point mass (:mod:`streamlearn.learners.corl.pointmass`) with goal
*positions*: task k's goal is the point at distance 2 in direction 0°, 180°, 90°
(k = 0, 1, 2), and a good policy heads for it from wherever it is and holds
there, so its action depends strongly on the state. Tasks 0 and 1 want opposite
actions in the same states (all episodes start near the origin), so a shared
actor can only keep both through its task input. The mass follows its action
directly (``inertia = 0``, ``dt = 0.2``) and episodes start at ``N(0, 0.5²)``.

Data per task (``quality="explore"``): 90% of the episodes are wide random
exploration (uniform actions from random states in [−4, 4]²), 10% a noisy expert
(PD controller + N(0, 0.3²) noise) from the evaluation start distribution. A
uniform buffer of such data is mostly random-exploration states that a good
policy never visits; MBES should keep states on the policy's paths.

Policies are shared across tasks with a one-hot task id in their input (the
public OER code's single-head option), so learning a new task moves the old
tasks' actions. TD3+BC with the paper's hyper-parameters (α = 2.5, γ = 0.99,
lr 3e-4), states normalised per task, 2 × 128 MLPs, 2,000 steps per task.

Why these settings (one-seed probes, seed 0, before the run; no seed was chosen):

- Learning accuracy. With 1,000 steps per task the learning accuracy was ≈ 71
  while the multi-task run (3× the batches) reached 105: under-training, not the
  score or the data. One task alone (2 × 64) scored 57, 75, 90, 108, 126 after
  500, 1,000, 2,000, 3,000, 4,000 steps; a fresh actor (task 0) needs the most.
- Headroom. With 2 × 64 actors, 20 random transitions per old task kept the
  old tasks well (ER-random BWT −7 to −8 with opposite goals, −4 with wider
  exploration in [−6, 6]², which also learned worse, LA 88): a small network
  cannot fit 20 replayed targets without also keeping the old task's smooth
  "go to the goal" map between them. A 2 × 128 actor can fit them and still move
  elsewhere: ER-random BWT −22 (N = 20) against OER's +1, whose buffer states lie
  on the policy's paths (mean distance from visited states 0.5 against 1.1–1.4).

Methods (rows):

- ``multi-task``: TD3+BC on the union of all tasks' data, trained once at the end
  with one batch of every task per step and T × steps_per_task steps (the upper
  bound; its "LA" is its return on each task, it has no BWT);
- ``fine-tune``: nothing kept of old tasks;
- ``ER-random``: N random transitions per old task, cloned through the single actor;
- ``OER``: MBES buffers + DBC (the paper's method);
- ``OER w/o DBC``: MBES buffers cloned through the single actor;
- ``oracle MBES``: OER whose walks use the expert policy and the true dynamics
  (the best MBES could do), a ceiling for selection.

The full run has N = 20 only, with five seeds, to stay under 15 minutes on two
cores; ``--buffer-sizes 20 50 100`` adds larger buffers (ER-random and OER only
beyond ``ablation_sizes``). The paper's other selection baselines are not run.

Scores: returns normalised to 0 = uniform random policy, 100 = the PD expert;
R[i, j] = score on task j after training through task i; ACC = mean_j R[T−1, j],
BWT = mean_{j<T−1} (R[T−1, j] − R[j, j]), LA = mean_j R[j, j]. Mean and 95%
confidence intervals (Student t) over seeds. Diagnostics per buffer: the share of
random-exploration transitions, how many the MBES walks visited, how many were
padded at random, and the mean distance from states the acting policy visits to
the nearest kept state (coverage).

Success criteria (issue 17), stated before running:
  1. fine-tune BWT ≤ −30;
  2. ER-random at N = 20: BWT ≤ −10;
  3. OER better than ER-random on ACC or BWT with non-overlapping 95% intervals at N = 20 or 50;
  4. multi-task ACC ≥ the ACC of every continual method;
  and learning accuracy (LA) ≥ 80 for the comparison to count.

Run (under the shared lock; two worker processes with one thread each)::

    flock /tmp/bench.lock .venv/bin/python benchmarks/corl_continual.py            # full
    .venv/bin/python benchmarks/corl_continual.py --quick                           # seconds, temp dir

Seeds may run in separate invocations (``--seeds 0 1 2 --out A.json``, ``--seeds 3 4
--out B.json``); ``--combine A.json B.json`` then writes the summary, criteria and
plot of all their runs (the settings must agree apart from the seeds).

Reference: Gai, Wang, He, "OER: Offline Experience Replay for Continual Offline
Reinforcement Learning" (arXiv 2305.13804).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from streamlearn.learners.corl import OER, TD3BC, TD3BCConfig, Transitions
from streamlearn.learners.corl.pointmass import PointMass

RESULTS = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass
class Settings:
    n_tasks: int = 3
    goal_angles: tuple[float, ...] = (0.0, 180.0, 90.0)  # degrees; tasks 0 and 1 pull in opposite directions
    explore_radius: float = 4.0  # random-exploration episodes start in [-r, r]^2
    transitions_per_task: int = 100_000  # 2,000 episodes of 50 steps
    random_share: float = 0.9
    steps_per_task: int = 2_000
    hidden: int = 128
    batch_size: int = 256
    dynamics_hidden: int = 64
    dynamics_steps: int = 500
    buffer_sizes: tuple[int, ...] = (20,)  # N = 50, 100 fit the 15-minute budget only with --seeds cut
    ablation_sizes: tuple[int, ...] = (20,)  # sizes that also run "OER w/o DBC" and "oracle MBES"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    eval_episodes: int = 10
    workers: int = 2


QUICK = Settings(transitions_per_task=2_000, steps_per_task=40, hidden=16, batch_size=32, dynamics_hidden=16,
                 dynamics_steps=20, buffer_sizes=(20,), seeds=(0, 1), eval_episodes=3)

#: Continual methods as OER parameters (``oracle``: MBES with the expert policy and the true dynamics).
METHODS = {
    "fine-tune": {"selection": "none", "dual_bc": False},
    "ER-random": {"selection": "random", "dual_bc": False},
    "OER": {"selection": "mbes", "dual_bc": True},
    "OER w/o DBC": {"selection": "mbes", "dual_bc": False},
    "oracle MBES": {"selection": "mbes", "dual_bc": True, "oracle": True},
}


def make_env(s: Settings) -> PointMass:
    return PointMass(n_tasks=s.n_tasks, goals="positions", inertia=0.0, dt=0.2, start_noise=0.5,
                     explore_radius=s.explore_radius, goal_angles=s.goal_angles)


class TrueDynamics:
    """The point mass's own dynamics as a certain 'ensemble' of one (the oracle's model)."""

    def __init__(self, env: PointMass):
        self.env = env

    def predict(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        return self.env.step(np.asarray(obs, np.float64), np.asarray(act, np.float64), 0)[0][None]


class OracleOER(OER):
    """OER whose MBES walks follow the expert with the true dynamics (cloning targets stay the learned policy's)."""

    env: PointMass
    task_index: int

    def _select(self, data, head):
        n, size = len(data["reward"]), self.buffer_size
        if n <= size:
            return super()._select(data, head)
        index = self.selector.select(data["obs"], data["action"], data["next_obs"], data["done"],
                                     lambda obs: self.env.expert_action(obs, self.task_index),
                                     TrueDynamics(self.env), size, self._rng)
        kept = {key: data[key][index].copy() for key in ("obs", "action", "reward", "next_obs", "done")}
        kept["target"] = self.agent.act(kept["obs"], head).astype(np.float32)
        return kept, self.selector.padded, self.selector.walked


def reference_returns(env: PointMass, s: Settings) -> dict[str, list[float]]:
    uniform = np.random.default_rng(0)
    return {
        "random": [env.evaluate(lambda o: uniform.uniform(-1, 1, (len(o), 2)), j, s.eval_episodes, 10_000)
                   for j in range(s.n_tasks)],
        "expert": [env.evaluate(lambda o, j=j: env.expert_action(o, j), j, s.eval_episodes, 10_000)
                   for j in range(s.n_tasks)],
    }


def datasets(env: PointMass, s: Settings, seed: int) -> list[dict[str, np.ndarray]]:
    return [env.dataset(k, s.transitions_per_task, "explore", seed=1_000 * seed + k, random_share=s.random_share)
            for k in range(s.n_tasks)]


def score(env: PointMass, ref: dict, policy, task: int, s: Settings) -> float:
    raw = env.evaluate(policy, task, s.eval_episodes, seed=10_000)
    return 100 * (raw - ref["random"][task]) / (ref["expert"][task] - ref["random"][task])


def run_one(job: tuple[str, int | None, int, Settings]) -> dict:
    """One method, buffer size and seed: the normalised R matrix and the buffer diagnostics."""
    method, size, seed, s = job
    torch.set_num_threads(1)
    started, cpu_started = time.perf_counter(), time.process_time()
    env = make_env(s)
    ref = reference_returns(env, s)
    data = datasets(env, s, seed)
    r = np.full((s.n_tasks, s.n_tasks), np.nan)
    buffers: list[dict] = []
    if method == "multi-task":
        config = TD3BCConfig(hidden=s.hidden, batch_size=s.batch_size, conditioning="input")
        agent = TD3BC(env.obs_dim, env.act_dim, s.n_tasks, config, seed=seed)
        parts = []
        for k, d in enumerate(data):
            agent.set_normalisation(k, d["obs"])
            parts.append(Transitions.from_arrays(d, k))
        rng = np.random.default_rng(seed)
        for _ in range(s.n_tasks * s.steps_per_task):  # the continual methods' total steps, a batch of every task
            agent.update(Transitions.concat([p.sample(rng, s.batch_size) for p in parts]))
        final = [score(env, ref, lambda o, j=j: agent.act(o, j), j, s) for j in range(s.n_tasks)]
        r[-1] = final
        np.fill_diagonal(r, final)
    else:
        params = dict(METHODS[method])
        oracle = params.pop("oracle", False)
        learner = (OracleOER if oracle else OER)(
            env.obs_dim, env.act_dim, buffer_size=size or 1, steps_per_task=s.steps_per_task, max_tasks=s.n_tasks,
            hidden=s.hidden, batch_size=s.batch_size, dynamics_hidden=s.dynamics_hidden,
            dynamics_steps=s.dynamics_steps, conditioning="input", seed=seed, **params,
        )
        if oracle:
            learner.env = env
        for i, d in enumerate(data):
            if oracle:
                learner.task_index = i
            summary = learner.train_task(str(i), d)
            for j in range(i + 1):
                r[i, j] = score(env, ref, lambda o, j=j: learner.act(o, str(j)), j, s)
            if learner.selection != "none":
                kept = learner.buffer(str(i))
                _, visited = env.rollout(lambda o: learner.act(o, str(i)), i, s.eval_episodes, seed=10_000)
                gaps = np.sqrt(((visited[:, None, :] - kept["obs"][None, :, :]) ** 2).sum(-1))
                random_rows = {row.tobytes() for row in d["obs"][d["random_policy"]]}
                buffers.append({
                    "random_share": float(np.mean([row.tobytes() in random_rows for row in kept["obs"]])),
                    "coverage_distance": float(gaps.min(1).mean()),  # visited state -> nearest kept state
                    "walked": summary["walked"],
                    "padded": summary["padded"],
                })
    t = s.n_tasks - 1
    return {
        "method": method, "buffer_size": size, "seed": seed, "R": r.tolist(),
        "ACC": float(np.mean(r[t])), "BWT": None if method == "multi-task" else float(np.mean(r[t, :t] - np.diag(r)[:t])),
        "LA": float(np.mean(np.diag(r))), "buffers": buffers, "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
    }


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and the 95% Student-t confidence interval."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for method, size in dict.fromkeys((r["method"], r["buffer_size"]) for r in runs):
        sel = [r for r in runs if r["method"] == method and r["buffer_size"] == size]
        row = {"method": method, "buffer_size": size, "seeds": len(sel)}
        for metric in ("ACC", "BWT", "LA"):
            if sel[0][metric] is not None:
                row[metric], row[f"{metric}_lo"], row[f"{metric}_hi"] = interval([r[metric] for r in sel])
        if sel[0]["buffers"]:
            for key in ("random_share", "coverage_distance", "walked", "padded"):
                row[f"buffer_{key}"] = float(np.mean([b[key] for r in sel for b in r["buffers"]]))
        with warnings.catch_warnings():  # multi-task has only its last row: the other means are NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            row["R_mean"] = np.nanmean([r["R"] for r in sel], axis=0).tolist()
        rows.append(row)
    return rows


def criteria(rows: list[dict]) -> dict[str, dict]:
    def find(method, size=None):
        return next((r for r in rows if r["method"] == method and r["buffer_size"] == size), None)

    out = {}
    ft = find("fine-tune")
    out["fine-tune BWT <= -30"] = {"value": ft["BWT"], "pass": ft["BWT"] <= -30}
    er20 = find("ER-random", 20)
    if er20:
        out["ER-random N=20 BWT <= -10"] = {"value": er20["BWT"], "pass": er20["BWT"] <= -10}
    better = {}
    for n in (20, 50):
        oer, er = find("OER", n), find("ER-random", n)
        if oer and er:
            better[n] = {m: bool(oer[f"{m}_lo"] > er[f"{m}_hi"]) for m in ("ACC", "BWT")}
    out["OER > ER-random (non-overlapping 95% CI) at N=20 or 50"] = {
        "value": better, "pass": any(any(v.values()) for v in better.values())}
    multi = find("multi-task")
    best = max(r["ACC"] for r in rows if r["method"] != "multi-task")
    out["multi-task ACC >= every continual method"] = {"value": [multi["ACC"], best], "pass": multi["ACC"] >= best}
    la = {f"{r['method']} {r['buffer_size']}": r["LA"] for r in rows}
    out["learning accuracy >= 80"] = {"value": la, "pass": all(v >= 80 for v in la.values())}
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 5), layout="constrained")
    labels = [r["method"] + ("" if r["buffer_size"] is None else f"\nN={r['buffer_size']}") for r in rows]
    x = np.arange(len(rows))
    for ax, metric in zip(axes, ("ACC", "BWT", "LA"), strict=True):
        have = [i for i, r in enumerate(rows) if metric in r]
        means = np.array([rows[i][metric] for i in have])
        err = np.array([[rows[i][metric] - rows[i][f"{metric}_lo"], rows[i][f"{metric}_hi"] - rows[i][metric]]
                        for i in have]).T
        ax.bar(x[have], means, yerr=np.nan_to_num(err), capsize=3,
               color=[f"C{sorted({r['method'] for r in rows}).index(rows[i]['method'])}" for i in have])
        ax.set_xticks(x, labels, fontsize=7, rotation=40)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{metric} (normalised score, mean and 95% CI)", fontsize=9)
    fig.suptitle("Continual offline RL, point-mass goal positions, 90% random exploration + 10% noisy expert")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings (seconds), written to a temporary dir")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    parser.add_argument("--buffer-sizes", type=int, nargs="+", help="override N")
    parser.add_argument("--transitions", type=int, help="override the transitions per task")
    parser.add_argument("--steps-per-task", type=int, help="override the TD3+BC steps per task")
    parser.add_argument("--out", help="output JSON (default benchmarks/results/corl_continual.json)")
    parser.add_argument("--combine", nargs="+", metavar="JSON",
                        help="summarise the runs of earlier invocations that differ only in their seeds, run nothing")
    args = parser.parse_args()
    s = QUICK if args.quick else Settings()
    overrides = {"seeds": tuple(args.seeds) if args.seeds else None,
                 "buffer_sizes": tuple(args.buffer_sizes) if args.buffer_sizes else None,
                 "transitions_per_task": args.transitions, "steps_per_task": args.steps_per_task}
    s = dataclasses.replace(s, **{k: v for k, v in overrides.items() if v is not None})
    out = Path(args.out) if args.out else (
        (Path(tempfile.mkdtemp(prefix="corl-continual-")) if args.quick else RESULTS) / "corl_continual.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.combine:
        report(combine(args.combine), out)
        return

    jobs = []
    for seed in s.seeds:
        jobs += [("multi-task", None, seed, s), ("fine-tune", None, seed, s)]
        jobs += [(m, n, seed, s) for n in s.buffer_sizes for m in METHODS
                 if m in ("ER-random", "OER") or (m != "fine-tune" and n in s.ablation_sizes)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(s.workers) as pool:
        runs = []
        for run in pool.imap(run_one, jobs):
            runs.append(run)
            print(f"seed {run['seed']} {run['method']:12s} N={run['buffer_size']!s:>4s}: ACC {run['ACC']:6.1f} "
                  f"BWT {run['BWT'] if run['BWT'] is None else round(run['BWT'], 1)!s:>6s} LA {run['LA']:6.1f} "
                  f"({run['seconds']:.0f} s)", flush=True)
    result = {"benchmark": "corl_continual", "quick": args.quick, "settings": dataclasses.asdict(s), "runs": runs,
              "total_seconds": time.perf_counter() - started}
    report(result, out)


def combine(paths: list[str]) -> dict:
    """One result from the runs of several invocations that differ only in their seeds."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    first = {k: v for k, v in parts[0]["settings"].items() if k != "seeds"}
    for path, part in zip(paths, parts, strict=True):
        if {k: v for k, v in part["settings"].items() if k != "seeds"} != first or part["quick"] != parts[0]["quick"]:
            raise SystemExit(f"{path}: settings differ from {paths[0]} (only the seeds may)")
    seeds = [seed for part in parts for seed in part["settings"]["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"a seed appears in more than one input: {seeds}")
    return {"benchmark": "corl_continual", "quick": parts[0]["quick"], "settings": {**first, "seeds": seeds},
            "runs": [run for part in parts for run in part["runs"]],
            "total_seconds": sum(part["total_seconds"] for part in parts),
            "combined_from": [{"seeds": part["settings"]["seeds"], "total_seconds": part["total_seconds"]}
                              for part in parts]}


def report(result: dict, out: Path) -> None:
    """Adds the summary and the criteria to ``result``, writes it and its plot, and prints them."""
    rows = summarise(result["runs"])
    result.update(criteria=criteria(rows), summary=rows,
                  total_cpu_seconds=sum(r["cpu_seconds"] for r in result["runs"]))
    out.write_text(json.dumps(result, indent=1))
    plot(rows, out.with_suffix(".png"))
    for r in rows:
        print(f"{r['method']:12s} N={r['buffer_size']!s:>4s}: " + "  ".join(
            f"{m} {r[m]:6.1f} [{r[m + '_lo']:6.1f}, {r[m + '_hi']:6.1f}]" for m in ("ACC", "BWT", "LA") if m in r)
            + (f"  random share {r['buffer_random_share']:.2f} coverage {r['buffer_coverage_distance']:.2f}"
               if "buffer_random_share" in r else ""))
    for name, c in result["criteria"].items():
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {name}: {c['value']}")
    print(f"{result['total_seconds'] / 60:.1f} min; wrote {out}")

if __name__ == "__main__":
    main()
