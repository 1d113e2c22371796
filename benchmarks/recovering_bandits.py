"""Recovering-reward bandits: purely periodic policies offline and RecoveringUCB online.

N = 20 arms, d_max = 10, K ∈ {1, 2, 4, 8}, T = 20,000 periods, 5 seeds (each seed
draws a new instance and new Bernoulli noise), two kinds of recovery curves:

- smooth: r_i(d) = a_i (1 − e^{−b_i d}), a_i ~ U(0.3, 1), b_i ~ U(0.1, 1);
- step:   r_i(d) = μ_i · 1[d ≥ D_i],     μ_i ~ U(0.2, 1), D_i uniform on {1, …, 10}.

Offline (r known): average reward per period over T, divided by the fluid LP
bound, for the periodic policy (``PeriodicPolicy.plan``: best of the rounded LP
and the harmonic period chains), the rounded LP alone (``harmonic=False``, the
ALGORITHMS.md §6 reconstruction) and oracle greedy.

Online: pseudo-regret against the offline periodic policy — the periodic
policy's cumulative expected reward minus the learner's cumulative expected
reward (both from fresh arms at t = 0; expected rewards remove the noise of the
comparison) — for RecoveringUCB (plans chosen by a joint confidence bound on
the plan's reward, the default), RecoveringUCB with ``joint=False`` (plans
chosen by the sum of per-pair upper confidence values, the earlier version),
UCB-greedy and plain UCB (river's ``bandit.UCB``), with the log-log slope of
the mean regret over T ∈ [T/16, T] and the slope over each doubling of T.
Both RecoveringUCB versions' regret is split by epoch (between re-plans) into
the plan choice, Σ epoch length × (benchmark's long-run reward − the epoch
plan's long-run reward under the true r), and the rest, mostly the transitions
between plans (the new plan starts from the idle times the old one left).
Also: RecoveringUCB's sensitivity to its exploration constant c, and the
decision latency per period for N = 100 (one core, outside re-planning).

Writes benchmarks/results/recovering_bandits.json and
recovering_bandits_regret.png / recovering_bandits_ratio.png.

    flock /tmp/streamlearn-bench.lock python benchmarks/recovering_bandits.py
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
)

RESULTS = ROOT / "benchmarks" / "results"
ONLINE = ("RecoveringUCB", "RecoveringUCB (per-pair bonus)", "UCB-greedy", "plain UCB")
#: The learners whose regret is split into plan choice and transitions.
PLANNED = ONLINE[:2]


def instance(kind: str, n: int, d_max: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = np.arange(1, d_max + 1)
    if kind == "smooth":
        a, b = rng.uniform(0.3, 1.0, n), rng.uniform(0.1, 1.0, n)
        return a[:, None] * (1 - np.exp(-b[:, None] * d))
    mu, deadline = rng.uniform(0.2, 1.0, n), rng.integers(1, d_max + 1, n)
    return mu[:, None] * (d[None, :] >= deadline[:, None])


def run(policy, r: np.ndarray, periods: int, seed: int, epochs: list | None = None) -> np.ndarray:
    """Closed loop on a Bernoulli simulator; the expected reward earned in each period.

    With ``epochs`` (a list), a learner's plans are appended to it as (first period, plan).
    """
    env = RecoveringEnv(r, seed=seed)
    earned = np.zeros(periods)
    offline = not hasattr(policy, "update")
    for t in range(periods):
        arms = policy.arms(t) if offline else policy.select(t)
        if epochs is not None and (not epochs or epochs[-1][1] is not policy.plan):
            epochs.append((t, policy.plan))
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


def octave_slopes(grid: np.ndarray, regret: np.ndarray, periods: int) -> list[float | None]:
    """log2 of the regret's growth over each doubling of T from T/16 to T (the local log-log slope)."""
    at = dict(zip(grid.tolist(), regret))
    points = [at[periods >> j] for j in range(4, -1, -1)]
    return [float(np.log2(b / a)) if a > 0 and b > 0 else None for a, b in zip(points, points[1:])]


def split_regret(epochs: list, r: np.ndarray, benchmark_rate: float, earned: np.ndarray) -> dict:
    """A learner's regret split by epoch into the plan choice and the rest (transitions, start-up)."""
    starts = [start for start, _ in epochs] + [len(earned)]
    plan_choice = sum((end - start) * (benchmark_rate - plan.average_reward(r)) for (start, plan), end in zip(epochs, starts[1:]))
    return {"plan_choice": float(plan_choice), "transitions_and_start": float(len(earned) * benchmark_rate - plan_choice - earned.sum())}


def summary(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std()), "per_seed": values.round(5).tolist()}


def experiment(kinds, ks, seeds, periods, n, d_max, c_values, c_ks) -> tuple[dict, dict, dict, dict]:
    octaves = [periods >> j for j in range(5)]  # T/16 … T, for the slope over each doubling
    grid = np.unique(np.r_[np.round(np.logspace(2, np.log10(periods), 60)).astype(int), octaves])
    offline: dict = {}
    online: dict = {}
    curves: dict = {}
    sensitivity: dict = {}
    for kind in kinds:
        offline[kind], online[kind], curves[kind], sensitivity[kind] = {}, {}, {}, {}
        for k in ks:
            ratios = {"periodic": [], "periodic (LP rounding only)": [], "oracle greedy": []}
            bounds, regret = [], {name: [] for name in ONLINE}
            online_ratio = {name: [] for name in ONLINE}
            replans, plan_seconds = {name: [] for name in PLANNED}, []
            split = {name: [] for name in PLANNED}
            c_regret = {c: [] for c in c_values} if k in c_ks else {}
            for seed in seeds:
                r = instance(kind, n, d_max, seed)
                bound = fluid_upper_bound(r, k)
                bounds.append(bound)
                started = time.perf_counter()
                plan = PeriodicPolicy.plan(r, k)
                plan_seconds.append(time.perf_counter() - started)
                benchmark = run(plan, r, periods, seed)
                benchmark_rate = plan.average_reward(r)
                ratios["periodic"].append(benchmark.mean() / bound)
                ratios["periodic (LP rounding only)"].append(run(PeriodicPolicy.plan(r, k, harmonic=False), r, periods, seed).mean() / bound)
                ratios["oracle greedy"].append(run(OracleGreedy(r, k), r, periods, seed).mean() / bound)
                learners = {
                    "RecoveringUCB": RecoveringUCB(n, k, d_max, seed=seed),
                    "RecoveringUCB (per-pair bonus)": RecoveringUCB(n, k, d_max, seed=seed, joint=False),
                    "UCB-greedy": UCBGreedy(n, k, d_max, seed=seed),
                    "plain UCB": PlainUCB(n, k, seed=seed),
                }
                for name, learner in learners.items():
                    epochs = [] if name in PLANNED else None
                    earned = run(learner, r, periods, seed, epochs)
                    regret[name].append(np.cumsum(benchmark - earned)[grid - 1])
                    online_ratio[name].append(earned.mean() / bound)
                    if name in PLANNED:
                        replans[name].append(learner.replans)
                        split[name].append(split_regret(epochs, r, benchmark_rate, earned))
                for c in c_regret:
                    earned = run(RecoveringUCB(n, k, d_max, seed=seed, c=c), r, periods, seed)
                    c_regret[c].append(float(np.sum(benchmark - earned)))
                print(f"  {kind} K={k} seed={seed}: periodic {ratios['periodic'][-1]:.3f}, RecoveringUCB regret "
                      f"{regret['RecoveringUCB'][-1][-1]:.0f} (per-pair bonus {regret[PLANNED[1]][-1][-1]:.0f}), "
                      f"replans {replans['RecoveringUCB'][-1]}", flush=True)
            offline[kind][k] = {
                "fluid_bound": summary(bounds),
                "ratio_to_bound": {name: summary(v) for name, v in ratios.items()},
                "plan_seconds": summary(plan_seconds),
            }
            online[kind][k] = {}
            curves[kind][k] = {"T": grid.tolist()}
            for name in ONLINE:
                mean_regret = np.mean(regret[name], axis=0)
                online[kind][k][name] = {
                    "regret_at_T": summary([reg[-1] for reg in regret[name]]),
                    "loglog_slope": loglog_slope(grid, mean_regret, periods),
                    "slope_by_doubling": octave_slopes(grid, mean_regret, periods),
                    "ratio_to_bound": summary(online_ratio[name]),
                }
                curves[kind][k][name] = mean_regret.round(2).tolist()
            for name in PLANNED:
                online[kind][k][name]["replans"] = summary(replans[name])
                online[kind][k][name]["regret_split"] = {part: summary([s[part] for s in split[name]]) for part in split[name][0]}
            if c_regret:
                sensitivity[kind][k] = {str(c): summary(v) for c, v in c_regret.items()}
    return offline, online, curves, sensitivity


def latency(n: int, k: int, d_max: int, periods: int, seed: int = 0) -> dict:
    """Per-period wall time of RecoveringUCB on one core: select(t) alone, and select + the k updates."""
    r = instance("smooth", n, d_max, seed)
    env = RecoveringEnv(r, seed=seed)
    policy = RecoveringUCB(n, k, d_max, seed=seed)
    select_ns, period_ns, replan_ns = [], [], []
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
            continue
        select_ns.append(selected - start)
        period_ns.append(selected - start + done - update_start)
    plan = policy.plan
    arms_ns = []
    for t in range(periods):
        start = clock()
        plan.arms(t)
        arms_ns.append(clock() - start)

    def micro(values) -> dict:
        us = np.asarray(values) / 1e3
        return {"median_us": float(np.median(us)), "mean_us": float(us.mean()), "p99_us": float(np.percentile(us, 99))}

    return {
        "n_arms": n,
        "k": k,
        "d_max": d_max,
        "periods": periods,
        "select": micro(select_ns),
        "select_plus_updates": micro(period_ns),
        "offline_plan_arms": micro(arms_ns),
        "replan": {"count": len(replan_ns), **micro(replan_ns)},
    }


def plots(curves: dict, offline: dict, online: dict, periods: int, path_regret: Path, path_ratio: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(curves)
    ks = list(curves[kinds[0]])
    fig, axes = plt.subplots(len(kinds), len(ks), figsize=(3.6 * len(ks), 3.3 * len(kinds)), squeeze=False)
    for row, kind in enumerate(kinds):
        for col, k in enumerate(ks):
            ax = axes[row, col]
            grid = np.asarray(curves[kind][k]["T"], dtype=float)
            for name in ONLINE:
                regret = np.asarray(curves[kind][k][name])
                positive = regret > 0
                slope = online[kind][k][name]["loglog_slope"]
                label = f"{name} (slope {slope:.2f})" if slope is not None else f"{name} (regret ≤ 0 late)"
                ax.loglog(grid[positive], regret[positive], lw=1.6, label=label)
            anchor = np.asarray(curves[kind][k]["RecoveringUCB"])[-1]
            if anchor > 0:
                ax.loglog(grid, anchor * np.sqrt(grid / grid[-1]), "k:", lw=1, label="∝ √T")
                ax.loglog(grid, anchor * grid / grid[-1], "k--", lw=0.8, label="∝ T")
            ax.set_title(f"{kind}, K = {k}")
            ax.set_xlabel("T (periods)")
            if col == 0:
                ax.set_ylabel("regret vs offline periodic")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path_regret, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for name in ("periodic", "periodic (LP rounding only)", "oracle greedy"):
            means = [offline[kind][k]["ratio_to_bound"][name]["mean"] for k in ks]
            ax.plot(ks, means, marker="o", label=name)
        for name in PLANNED:
            means = [online[kind][k][name]["ratio_to_bound"]["mean"] for k in ks]
            ax.plot(ks, means, marker="s", ls="--", label=f"{name} (learning, T = {periods})")
        ax.axhline(0.95, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("K (arms per period)")
        ax.set_ylabel("average reward / fluid LP bound")
        ax.set_title(f"{kind} recovery")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path_ratio, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings that finish in seconds")
    parser.add_argument("--out", type=Path, help="output directory (default: benchmarks/results; a temporary one with --quick)")
    args = parser.parse_args(argv)
    out = args.out or (Path(tempfile.mkdtemp(prefix="recovering-bandits-bench-")) if args.quick else RESULTS)
    n, d_max = 20, 10
    if args.quick:
        kinds, ks, seeds, periods = ("smooth", "step"), (1, 8), (0,), 2000
        c_values, c_ks, latency_periods = (), (), 1000
    else:
        kinds, ks, seeds, periods = ("smooth", "step"), (1, 2, 4, 8), tuple(range(5)), 20000
        c_values, c_ks, latency_periods = (0.25, 1.0), (4,), 5000
    started = time.perf_counter()
    offline, online, curves, sensitivity = experiment(kinds, ks, seeds, periods, n, d_max, c_values, c_ks)
    for kind in kinds:  # c = 0.5 (the default) is the main run
        for k in sensitivity[kind]:
            sensitivity[kind][k]["0.5"] = online[kind][k]["RecoveringUCB"]["regret_at_T"]
    timing = {f"k={k}": latency(100, k, d_max, latency_periods) for k in (1, 8)}

    def rises(name: str, kind: str) -> bool:
        means = [offline[kind][k]["ratio_to_bound"][name]["mean"] for k in ks]
        return all(b >= a - 1e-9 for a, b in zip(means, means[1:]))

    k_top = max(ks)
    checks = {
        "periodic_ratio_at_max_k_ge_0.95": {kind: offline[kind][k_top]["ratio_to_bound"]["periodic"]["mean"] >= 0.95 for kind in kinds},
        "periodic_ratio_rises_with_k": {kind: rises("periodic", kind) for kind in kinds},
        "lp_rounding_ratio_rises_with_k": {kind: rises("periodic (LP rounding only)", kind) for kind in kinds},
        "recovering_ucb_slope_le_0.6": {
            kind: {k: (s := online[kind][k]["RecoveringUCB"]["loglog_slope"]) is not None and s <= 0.6 for k in ks} for kind in kinds
        },
        "recovering_ucb_per_pair_bonus_slope_le_0.6": {
            kind: {k: (s := online[kind][k][PLANNED[1]]["loglog_slope"]) is not None and s <= 0.6 for k in ks} for kind in kinds
        },
        "plain_ucb_slope_ge_0.9": {
            kind: {k: (s := online[kind][k]["plain UCB"]["loglog_slope"]) is not None and s >= 0.9 for k in ks} for kind in kinds
        },
        "latency_select_plus_updates_median_le_100us_n100": {key: v["select_plus_updates"]["median_us"] <= 100 for key, v in timing.items()},
    }
    result = {
        "benchmark": "recovering_bandits",
        "quick": args.quick,
        "settings": {
            "n_arms": n,
            "d_max": d_max,
            "k": list(ks),
            "periods": periods,
            "seeds": list(seeds),
            "noise": "bernoulli",
            "recovering_ucb": {"c": 0.5, "min_epoch": 3 * d_max, "monotone": True, "harmonic": True, "joint": True},
            "recovering_ucb_per_pair_bonus": {"c": 0.5, "min_epoch": 3 * d_max, "monotone": True, "harmonic": True, "joint": False},
            "plain_ucb": "river.bandit.UCB(delta=1), top K by repeated pulls",
            "regret": "pseudo-regret: cumulative expected reward of the offline periodic policy minus the learner's",
            "slope_window": "T in [T/16, T]; slope_by_doubling: log2 R(2T')/R(T') for T' = T/16, T/8, T/4, T/2",
            "regret_split": "plan_choice: sum over epochs of length x (benchmark long-run reward - epoch plan's long-run reward under true r); "
            "transitions_and_start: the rest of the regret",
        },
        "targets": {
            "periodic_ratio_at_k8": ">= 0.95 on both instance types, rising with K",
            "recovering_ucb_loglog_slope": "<= 0.6 (about sqrt(T))",
            "plain_ucb": "linear regret (slope about 1)",
            "latency": "<= 100 us per period for N = 100 on one core outside re-planning",
        },
        "checks": checks,
        "offline": offline,
        "online": online,
        "c_sensitivity_regret_at_T": sensitivity,
        "latency": timing,
        "regret_curves": curves,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "processor": platform.processor()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "recovering_bandits.json").write_text(json.dumps(result, indent=1))
    plots(curves, offline, online, periods, out / "recovering_bandits_regret.png", out / "recovering_bandits_ratio.png")

    print(f"\nrecovering bandits: N={n}, d_max={d_max}, T={periods}, seeds={len(seeds)} ({result['seconds']} s)")
    for kind in kinds:
        print(f"{kind}:")
        for k in ks:
            o, on = offline[kind][k]["ratio_to_bound"], online[kind][k]
            slopes = ", ".join(f"{name} {on[name]['loglog_slope'] if on[name]['loglog_slope'] is None else round(on[name]['loglog_slope'], 2)}" for name in ONLINE)
            print(
                f"  K={k}: ratio periodic {o['periodic']['mean']:.3f} (LP rounding {o['periodic (LP rounding only)']['mean']:.3f}), "
                f"greedy {o['oracle greedy']['mean']:.3f} | regret@T "
                + ", ".join(f"{name} {on[name]['regret_at_T']['mean']:.0f}" for name in ONLINE)
                + f" | slopes {slopes}"
            )
    for key, v in timing.items():
        print(f"latency N=100 {key}: select+updates median {v['select_plus_updates']['median_us']:.1f} us "
              f"(p99 {v['select_plus_updates']['p99_us']:.1f}), re-plan {v['replan']['mean_us'] / 1e3:.1f} ms x {v['replan']['count']}")
    print("checks:", json.dumps(checks))
    print(f"wrote {out / 'recovering_bandits.json'} and plots")
    return result


if __name__ == "__main__":
    main()
