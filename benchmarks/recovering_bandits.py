"""Recovering-reward bandits: the paper's purely periodic policy, the project's planner, and learning online.

Three kinds of recovery curves r_i(d) (d = idle periods, flat from d_max = 10 on):

- smooth: r_i(d) = a_i (1 − e^{−b_i d}), a_i ~ U(0.3, 1), b_i ~ U(0.1, 1);
- step:   r_i(d) = μ_i · 1[d ≥ D_i],     μ_i ~ U(0.2, 1), D_i uniform on {1, …, 10};
- convex: r_i(d) = μ_i (d / d_max)²,     μ_i ~ U(0.3, 1) — slow recovery that pays
  most for long rests, where pulling the best arm now (greedy) is myopic.

1. Offline, r known (the paper's theorem): the average reward per period over the
   fluid LP bound, against K ∈ {1, 2, 4, 8, 16, 32} with N = 5K arms, 10 instances
   per (kind, K). Rows, paper first:

   - ``paper: LP rounding + random offsets`` — ``PeriodicPolicy.randomized``: periods
     drawn from the LP solution, independent uniform offsets (mean over 5 draws
     per instance). Its gap to the bound is fitted as c/√K (least squares), the
     paper's 1 − O(1/√K);
   - ``ours: LP rounding + greedy offsets`` — ``PeriodicPolicy.plan(harmonic=False)``;
   - ``ours: + harmonic period chains (default planner)`` — ``PeriodicPolicy.plan``;
   - ``oracle greedy (rests arms worth 0)`` and ``oracle greedy (always pulls K)``.

   All periodic rows are exact long-run rewards (``average_reward``); greedy's is
   its mean expected reward over 3,000 periods.
2. Online, r unknown: N = 10, K = 2, T = 100,000 periods, seeds 0, 1, 2, Bernoulli
   rewards. RecoveringUCB (the default: harmonic chains, greedy offsets, a
   plan-level ESCB bound and doubling epochs — the paper's UCB-plus-planner idea
   with the project's additions), UCB-greedy and plain UCB (river's ``bandit.UCB``).
   Reported: cumulative expected reward over T (and over the fluid bound × T),
   pseudo-regret against the offline default plan with its log-log slope over
   [T/16, T], and the first T from which RecoveringUCB's cumulative reward stays
   above UCB-greedy's.
3. Decision latency of RecoveringUCB for N = 100 (one core, outside re-planning).

Writes benchmarks/results/recovering_bandits.json and recovering_bandits_ratio.png /
recovering_bandits_online.png.

    flock /tmp/bench.lock python benchmarks/recovering_bandits.py
    python benchmarks/recovering_bandits.py --quick
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlearn.learners.bandits import (  # noqa: E402
    OracleGreedy,
    PeriodicPolicy,
    PlainUCB,
    RecoveringEnv,
    RecoveringUCB,
    UCBGreedy,
    fluid_upper_bound,
    recovery_curves,
)

RESULTS = ROOT / "benchmarks" / "results"
KINDS = ("smooth", "step", "convex")
PAPER = "paper: LP rounding + random offsets"
OFFLINE = (
    PAPER,
    "ours: LP rounding + greedy offsets",
    "ours: + harmonic period chains (default planner)",
    "oracle greedy (rests arms worth 0)",
    "oracle greedy (always pulls K)",
)
ONLINE = ("RecoveringUCB", "UCB-greedy", "plain UCB")
D_MAX = 10


def greedy_rate(r: np.ndarray, k: int, periods: int, rest_worthless: bool) -> float:
    """Oracle greedy's mean expected reward per period (it learns nothing, so no noise is needed)."""
    greedy = OracleGreedy(r, k, rest_worthless=rest_worthless)
    total = 0.0
    for t in range(periods):
        idle = np.minimum(t - greedy.last_pulled, r.shape[1])
        arms = greedy.select(t)
        total += float(r[arms, idle[arms] - 1].sum())
    return total / periods


def offline_trend(kinds, ks, arms_per_k: int, instances: int, draws: int, greedy_periods: int) -> dict:
    out = {}
    for kind in kinds:
        out[kind] = {}
        for k in ks:
            n = arms_per_k * k
            ratios = {name: [] for name in OFFLINE}
            for seed in range(instances):
                r = recovery_curves(kind, n, D_MAX, seed)
                bound = fluid_upper_bound(r, k)
                paper = [PeriodicPolicy.randomized(r, k, seed=1000 * seed + draw).average_reward(r) for draw in range(draws)]
                ratios[PAPER].append(np.mean(paper) / bound)
                ratios[OFFLINE[1]].append(PeriodicPolicy.plan(r, k, harmonic=False).average_reward(r) / bound)
                ratios[OFFLINE[2]].append(PeriodicPolicy.plan(r, k).average_reward(r) / bound)
                ratios[OFFLINE[3]].append(greedy_rate(r, k, greedy_periods, rest_worthless=True) / bound)
                ratios[OFFLINE[4]].append(greedy_rate(r, k, greedy_periods, rest_worthless=False) / bound)
            out[kind][str(k)] = {"n_arms": n, "ratio_to_bound": {name: summary(v) for name, v in ratios.items()}}
            print(f"  offline {kind} K={k}: " + ", ".join(f"{name.split(':')[0]} {np.mean(v):.3f}" for name, v in ratios.items()), flush=True)
        out[kind]["paper_fit"] = sqrt_k_fit(ks, [out[kind][str(k)]["ratio_to_bound"][PAPER]["mean"] for k in ks])
    return out


def sqrt_k_fit(ks, ratios) -> dict:
    """Least-squares c in ``1 − ratio ≈ c / √K``, its R², and ``(1 − ratio)·√K`` per K."""
    x = 1 / np.sqrt(np.asarray(ks, dtype=float))
    gap = 1 - np.asarray(ratios)
    c = float(x @ gap / (x @ x))
    r2 = 1 - float(np.sum((gap - c * x) ** 2) / np.sum((gap - gap.mean()) ** 2)) if np.ptp(gap) > 0 else None
    return {"c": c, "r2": r2, "gap_times_sqrt_k": {str(k): float(g / xi) for k, g, xi in zip(ks, gap, x)}}


def run(policy, r: np.ndarray, periods: int, seed: int) -> np.ndarray:
    """Closed loop on a Bernoulli simulator; the expected reward earned in each period."""
    env = RecoveringEnv(r, seed=seed)
    earned = np.zeros(periods)
    offline = not hasattr(policy, "update")
    for t in range(periods):
        arms = policy.arms(t) if offline else policy.select(t)
        if arms:
            earned[t] = env.expected(arms).sum()
        rewards = env.step(arms)
        if not offline:
            for arm, reward in zip(arms, rewards):
                policy.update(t, arm, float(reward))
    return earned


def loglog_slope(grid: np.ndarray, regret: np.ndarray, periods: int) -> float | None:
    """Slope of log regret against log T over T ∈ [T/16, T]; None if the regret is not positive there."""
    window = grid >= periods / 16
    if np.any(regret[window] <= 0):
        return None
    return float(np.polyfit(np.log(grid[window]), np.log(regret[window]), 1)[0])


def overtakes_from(grid: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> int | None:
    """The first T on the grid from which ``ours`` stays above ``theirs`` (None: not by the end)."""
    behind = np.flatnonzero(ours <= theirs)
    if len(behind) == 0:
        return int(grid[0])
    return int(grid[behind[-1] + 1]) if behind[-1] + 1 < len(grid) else None


def summary(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std()), "per_seed": values.round(5).tolist()}


def online_long(kinds, k: int, n: int, periods: int, seeds) -> tuple[dict, dict]:
    grid = np.unique(np.round(np.logspace(2, np.log10(periods), 50)).astype(int))
    results, curves = {}, {}
    for kind in kinds:
        cumulative = {name: [] for name in ONLINE}
        regret = {name: [] for name in ONLINE}
        bounds, offline_rates = [], {"periodic (ours, default planner)": [], PAPER: [], "oracle greedy (rests arms worth 0)": []}
        for seed in seeds:
            r = recovery_curves(kind, n, D_MAX, seed)
            bound = fluid_upper_bound(r, k)
            bounds.append(bound)
            plan = PeriodicPolicy.plan(r, k)
            offline_rates["periodic (ours, default planner)"].append(plan.average_reward(r) / bound)
            offline_rates[PAPER].append(np.mean([PeriodicPolicy.randomized(r, k, seed=d).average_reward(r) for d in range(5)]) / bound)
            offline_rates["oracle greedy (rests arms worth 0)"].append(greedy_rate(r, k, 3000, rest_worthless=True) / bound)
            benchmark = np.cumsum(np.full(periods, plan.average_reward(r)))
            learners = {"RecoveringUCB": RecoveringUCB(n, k, D_MAX, seed=seed), "UCB-greedy": UCBGreedy(n, k, D_MAX, seed=seed), "plain UCB": PlainUCB(n, k, seed=seed)}
            for name, learner in learners.items():
                started = time.perf_counter()
                earned = np.cumsum(run(learner, r, periods, seed))
                cumulative[name].append(earned[grid - 1] / (grid * bound))
                regret[name].append((benchmark - earned)[grid - 1])
                print(f"  online {kind} seed={seed} {name}: {earned[-1] / (periods * bound):.3f} of the bound ({time.perf_counter() - started:.0f}s)", flush=True)
        mean_ratio = {name: np.mean(v, axis=0) for name, v in cumulative.items()}
        mean_regret = {name: np.mean(v, axis=0) for name, v in regret.items()}
        results[kind] = {
            "offline_ratio_to_bound": {name: summary(v) for name, v in offline_rates.items()},
            "ratio_to_bound_at_T": {name: summary([c[-1] for c in v]) for name, v in cumulative.items()},
            "regret_vs_offline_plan_at_T": {name: summary([g[-1] for g in v]) for name, v in regret.items()},
            "regret_loglog_slope": {name: loglog_slope(grid, mean_regret[name], periods) for name in ONLINE},
            "recovering_ucb_overtakes_ucb_greedy_from_T": overtakes_from(grid, mean_ratio["RecoveringUCB"], mean_ratio["UCB-greedy"]),
        }
        curves[kind] = {"T": grid.tolist(), **{name: v.round(5).tolist() for name, v in mean_ratio.items()}}
    return results, curves


def latency(n: int, k: int, periods: int, seed: int = 0) -> dict:
    """Per-period wall time of RecoveringUCB on one core: select(t) and the k updates, outside re-planning."""
    r = recovery_curves("smooth", n, D_MAX, seed)
    env = RecoveringEnv(r, seed=seed)
    policy = RecoveringUCB(n, k, D_MAX, seed=seed)
    period_ns, replan_ns = [], []
    clock = time.perf_counter_ns
    for t in range(periods):
        replans = policy.replans
        start = clock()
        arms = policy.select(t)
        selected = clock()
        rewards = env.step(arms)
        update_start = clock()
        for arm, reward in zip(arms, rewards):
            policy.update(t, arm, float(reward))
        done = clock()
        if policy.replans != replans:
            replan_ns.append(selected - start)
        else:
            period_ns.append(selected - start + done - update_start)
    us = np.asarray(period_ns) / 1e3
    return {
        "n_arms": n,
        "k": k,
        "periods": periods,
        "select_plus_updates": {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99))},
        "replan": {"count": len(replan_ns), "mean_ms": float(np.mean(replan_ns) / 1e6) if replan_ns else None},
    }


def plots(offline: dict, ks, curves: dict, online_settings: dict, path_ratio: Path, path_online: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(offline)
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for name in OFFLINE:
            means = [offline[kind][str(k)]["ratio_to_bound"][name]["mean"] for k in ks]
            ax.plot(ks, means, marker="o", lw=2.2 if name == PAPER else 1.2, label=name)
        c = offline[kind]["paper_fit"]["c"]
        fine = np.geomspace(min(ks), max(ks), 50)
        ax.plot(fine, 1 - c / np.sqrt(fine), "k:", lw=1, label=f"1 − {c:.2f}/√K (fit to the paper's row)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("K (arms per period), N = 5K")
        ax.set_ylabel("long-run reward / fluid LP bound")
        ax.set_title(f"{kind} recovery, r known")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path_ratio, dpi=110)
    plt.close(fig)

    kinds = list(curves)
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        grid = curves[kind]["T"]
        for name in ONLINE:
            ax.plot(grid, curves[kind][name], lw=1.5, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("T (periods)")
        ax.set_ylabel("cumulative reward / (T × fluid bound)")
        ax.set_title(f"{kind}, N = {online_settings['n_arms']}, K = {online_settings['k']}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path_online, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings that finish in about a minute")
    parser.add_argument("--out", type=Path, help="output directory (default: benchmarks/results; a temporary one with --quick)")
    args = parser.parse_args(argv)
    out = args.out or (Path(tempfile.mkdtemp(prefix="recovering-bandits-bench-")) if args.quick else RESULTS)
    if args.quick:
        ks, instances, draws, greedy_periods = (1, 4), 2, 2, 500
        online = {"n_arms": 10, "k": 2, "periods": 3000, "seeds": [0]}
        latency_periods = 500
    else:
        ks, instances, draws, greedy_periods = (1, 2, 4, 8, 16, 32), 10, 5, 3000
        online = {"n_arms": 10, "k": 2, "periods": 100_000, "seeds": [0, 1, 2]}
        latency_periods = 3000
    started = time.perf_counter()
    offline = offline_trend(KINDS, ks, 5, instances, draws, greedy_periods)
    t_offline = time.perf_counter() - started
    online_results, curves = online_long(KINDS, online["k"], online["n_arms"], online["periods"], online["seeds"])
    t_online = time.perf_counter() - started - t_offline
    timing = {f"k={k}": latency(100, k, latency_periods) for k in (1, 8)}

    def rises(kind: str) -> bool:
        means = [offline[kind][str(k)]["ratio_to_bound"][PAPER]["mean"] for k in ks]
        return all(b >= a - 0.01 for a, b in zip(means, means[1:]))

    result = {
        "benchmark": "recovering_bandits",
        "quick": args.quick,
        "settings": {
            "d_max": D_MAX,
            "offline": {"k": list(ks), "n_arms": "5K", "instances": instances, "paper_draws_per_instance": draws, "greedy_periods": greedy_periods},
            "online": {**online, "noise": "bernoulli", "recovering_ucb": "defaults (c=0.5, monotone, harmonic, joint ESCB plan bound, doubling epochs, min_epoch 3 d_max)"},
            "plain_ucb": "river.bandit.UCB(delta=1), top K by repeated pulls",
            "regret": "pseudo-regret: cumulative expected reward of the offline default plan minus the learner's",
        },
        "checks": {
            "paper_ratio_rises_with_k_within_0.01": {kind: rises(kind) for kind in KINDS},
            "paper_gap_fit_c_over_sqrt_k": {kind: offline[kind]["paper_fit"] for kind in KINDS},
        },
        "offline_ratio_to_fluid_bound": offline,
        "online": online_results,
        "online_curves": curves,
        "latency": timing,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "processor": platform.processor()},
        "seconds": {"offline": round(t_offline, 1), "online": round(t_online, 1), "total": round(time.perf_counter() - started, 1)},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "recovering_bandits.json").write_text(json.dumps(result, indent=1))
    plots(offline, ks, curves, online, out / "recovering_bandits_ratio.png", out / "recovering_bandits_online.png")

    print(f"\nrecovering bandits ({result['seconds']['total']} s)")
    for kind in KINDS:
        print(f"{kind}: offline ratio to the fluid bound by K = {list(ks)}")
        for name in OFFLINE:
            print(f"  {name:<50} " + " ".join(f"{offline[kind][str(k)]['ratio_to_bound'][name]['mean']:.3f}" for k in ks))
        fit = offline[kind]["paper_fit"]
        print(f"  paper's gap ≈ {fit['c']:.3f}/√K (R² {fit['r2']})")
        o = online_results[kind]
        print(f"  online T={online['periods']}: " + ", ".join(f"{name} {o['ratio_to_bound_at_T'][name]['mean']:.3f}" for name in ONLINE)
              + f"; RecoveringUCB ahead of UCB-greedy from T = {o['recovering_ucb_overtakes_ucb_greedy_from_T']}")
    for key, v in timing.items():
        print(f"latency N=100 {key}: median {v['select_plus_updates']['median_us']:.1f} us, re-plan {v['replan']['mean_ms']} ms x {v['replan']['count']}")
    print(f"wrote {out / 'recovering_bandits.json'} and plots")
    return result


if __name__ == "__main__":
    main()
