"""Frank-Wolfe online dictionary learning: rates over 5 seeds, a sparsity sweep, and both axes vs scikit-learn.

Complements ``benchmarks/fw_dictionary.py`` (one seed; memory, averaging,
real sensor data) with what Xue & Lau (arXiv 2103.01484) state and measure,
on the same synthetic streams ``y = D₀x`` (``D₀`` random orthogonal, ``x``
Bernoulli(θ)-Gaussian, no noise), 5 seeds per setting:

1. Rates. ``FrankWolfeODL`` (defaults, mini-batches of 16) for 2¹⁴ steps at
   n = 16 and 2¹³ at n = 32 (θ = 0.3). At log-spaced steps t: the recovery
   error ``1 − ‖DᵀD₀‖₄⁴/n`` of the read-out, the method's own Frank-Wolfe gap
   ``‖G_t‖_* − ⟨G_t, D_t⟩`` (averaged gradient, :attr:`FrankWolfeODL.frank_wolfe_gap`),
   and the gap of the population objective at the iterate, ``‖∇f(D_t)‖_* −
   ⟨∇f(D_t), D_t⟩`` with ∇f estimated on 20,000 held-out samples. Slopes are
   least-squares fits of log y on log t over the last two decades of t
   (t ≥ T/100), next to the theory's rate O(ln t / t^{1/4}) for the gap
   (slope −1/4; the ln t factor makes a fitted slope slightly shallower).
2. Sparsity sweep: θ ∈ {0.1, …, 0.5} at n = 16.
3. Both axes vs scikit-learn's ``MiniBatchDictionaryLearning`` (``partial_fit``
   per mini-batch; α = 0.5, batch 16, the pick of ``fw_dictionary.py``'s pilot)
   at n ∈ {16, 32, 64} (θ = 0.3) and across the sweep: samples and seconds of
   learning (one core) to reach error 1e-2, and the ratios MBDL / FW on each
   axis. Errors are evaluated every 160 samples for both (untimed);
   scikit-learn's runs stop at the target or at their budget.

    flock /tmp/bench.lock python benchmarks/fw_dictionary_rates.py [--quick]

Writes benchmarks/results/fw_dictionary_rates.json and fw_dictionary_rates.png
(``--quick``: 2 seeds, short runs, into a temporary directory unless ``--out`` says where).
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
from fw_dictionary import TARGET, Stream, run_fw, run_mbdl  # noqa: E402

from streamlearn.learners.dictionary import FrankWolfeODL, recovery_error  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = [0, 1, 2, 3, 4]
BATCH = 16
THETAS = (0.1, 0.2, 0.3, 0.4, 0.5)
MBDL_ALPHA, MBDL_BATCH = 0.5, 16  # fw_dictionary.py's pilot choice at n = 16
THEORY_GAP_SLOPE = -0.25


def population_gap(D: np.ndarray, held_out: np.ndarray) -> float:
    """Frank-Wolfe gap of E‖Dᵀy‖₃³ at D over the spectral-norm ball, the expectation over ``held_out``."""
    Z = held_out @ D
    gradient = 3.0 * held_out.T @ (np.abs(Z) * Z) / len(held_out)
    return float(np.linalg.svd(gradient, compute_uv=False).sum() - np.sum(gradient * D))


def rate_runs(n: int, steps: int, seeds: list[int]) -> dict:
    """Runs evaluated at log-spaced t (the learner is fed exactly up to each t)."""
    marks = sorted({int(t) for t in np.geomspace(1, steps, 40).round()})
    runs = []
    for seed in seeds:
        stream = Stream(n, 0.0, seed=1000 + seed)
        held = Stream(n, 0.0, seed=1000 + seed).head(20_000 + steps * BATCH)[steps * BATCH :]  # same D₀, unseen samples
        model = FrankWolfeODL(n_features=n, batch_size=BATCH, seed=seed)
        data = stream.head(steps * BATCH)
        curve = []
        for t in marks:
            model.learn_many(data[model.n_samples_seen : t * BATCH])
            curve.append([recovery_error(model.dictionary, stream.D0), model.frank_wolfe_gap,
                          population_gap(model.relaxed_dictionary, held)])
        runs.append(curve)
    values = np.array(runs)  # (seeds, marks, 3)
    t = np.array(marks, dtype=float)
    tail = t >= steps / 100
    out = {"n": n, "theta": 0.3, "steps": steps, "t": marks}
    for k, name in enumerate(("error", "fw_gap", "population_gap")):
        per_seed = values[:, :, k]
        slopes = [float(np.polyfit(np.log10(t[tail]), np.log10(np.maximum(v[tail], 1e-300)), 1)[0]) for v in per_seed]
        out[name] = {"mean": per_seed.mean(axis=0).tolist(), "min": per_seed.min(axis=0).tolist(),
                     "max": per_seed.max(axis=0).tolist(), "fitted_slope_mean": float(np.mean(slopes)),
                     "fitted_slope_std": float(np.std(slopes, ddof=1)) if len(slopes) > 1 else 0.0,
                     "fitted_slopes": slopes}
    out["theory_gap_slope"] = THEORY_GAP_SLOPE
    out["fit_range_t"] = [int(t[tail][0]), int(t[tail][-1])]
    return out


def both_axes(n: int, theta: float, seeds: list[int], fw_samples: int, mbdl_samples: int, mbdl_seconds: float) -> dict:
    """Samples and seconds to error 1e-2 for FW and MiniBatchDictionaryLearning, per seed, and the ratios."""
    rows = []
    for seed in seeds:
        stream = Stream(n, 0.0, seed=2000 + seed, theta=theta)
        fw = run_fw(stream, fw_samples)["iterative"]
        mb = run_mbdl(stream, mbdl_samples, MBDL_ALPHA, MBDL_BATCH, mbdl_seconds, stop_at_target=True)
        rows.append({"seed": seed, "fw_samples": fw["samples_to_target"], "fw_seconds": fw["seconds_to_target"],
                     "fw_final_error": fw["final_error"], "mbdl_samples": mb["samples_to_target"],
                     "mbdl_seconds": mb["seconds_to_target"], "mbdl_stopped_by": mb["stopped_by"],
                     "mbdl_samples_run": mb["samples_run"]})
    out = {"n": n, "theta": theta, "seeds": seeds, "per_seed": rows}
    for who in ("fw", "mbdl"):
        for axis in ("samples", "seconds"):
            values = [r[f"{who}_{axis}"] for r in rows]
            reached = [v for v in values if v is not None]
            out[f"{who}_{axis}_to_1e-2_mean"] = float(np.mean(reached)) if reached else None
            out[f"{who}_{axis}_to_1e-2_std"] = float(np.std(reached, ddof=1)) if len(reached) > 1 else None
            out[f"{who}_reached"] = f"{len(reached)}/{len(values)}"
    for axis in ("samples", "seconds"):
        ratios = [r[f"mbdl_{axis}"] / r[f"fw_{axis}"] for r in rows if r[f"mbdl_{axis}"] and r[f"fw_{axis}"]]
        out[f"mbdl_over_fw_{axis}_mean"] = float(np.mean(ratios)) if ratios else None
        out[f"mbdl_over_fw_{axis}_range"] = [float(min(ratios)), float(max(ratios))] if ratios else None
    print(f"n={n} θ={theta}: FW {out['fw_samples_to_1e-2_mean']} samples / {out['fw_seconds_to_1e-2_mean']} s "
          f"({out['fw_reached']}); MBDL {out['mbdl_samples_to_1e-2_mean']} samples / {out['mbdl_seconds_to_1e-2_mean']} s "
          f"({out['mbdl_reached']})", flush=True)
    return out


def plot(report: dict, path: Path) -> None:
    rates = report["rates"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    for ax, key, title in ((axes[0], "error", "recovery error 1 − ‖DᵀD₀‖₄⁴/n"),
                           (axes[1], "fw_gap", "Frank-Wolfe gap (averaged gradient)")):  # fmt: skip
        for k, r in enumerate(rates):
            t = np.array(r["t"])
            ax.loglog(t, r[key]["mean"], color=f"C{k}", label=f"n = {r['n']}: slope {r[key]['fitted_slope_mean']:.2f}")
            ax.fill_between(t, r[key]["min"], r[key]["max"], color=f"C{k}", alpha=0.2)
            if key == "fw_gap":
                ax.loglog(t, r["population_gap"]["mean"], color=f"C{k}", ls=":", label=f"n = {r['n']}, population gap: slope {r['population_gap']['fitted_slope_mean']:.2f}")
        if key == "fw_gap":
            t = np.array(rates[0]["t"], dtype=float)
            ref = rates[0]["fw_gap"]["mean"][0] * np.log(np.e * t) / t**0.25
            ax.loglog(t, ref, "k--", lw=1, label="ln t / t^{1/4} (theory's rate)")
        ax.set_xlabel("Frank-Wolfe step t (16 samples each)")
        ax.set_title(f"{title}, {len(report['seeds'])} seeds (mean, min–max)")
        ax.legend(fontsize=7)
    ax = axes[2]
    sweep = report["sparsity_sweep"]
    thetas = [r["theta"] for r in sweep]
    for who, colour in (("fw", "C0"), ("mbdl", "C3")):
        label = "Frank-Wolfe" if who == "fw" else "MiniBatchDictionaryLearning"
        ax.semilogy(thetas, [r[f"{who}_samples_to_1e-2_mean"] or np.nan for r in sweep], f"{colour}-o", label=f"{label}: samples")
    ax2 = ax.twinx()
    for who, colour in (("fw", "C0"), ("mbdl", "C3")):
        ax2.semilogy(thetas, [r[f"{who}_seconds_to_1e-2_mean"] or np.nan for r in sweep], f"{colour}--s", label=f"{'FW' if who == 'fw' else 'MBDL'}: seconds")
    ax.set_xlabel("sparsity θ (fraction of non-zero code entries)")
    ax.set_ylabel("samples to error 1e-2 (solid)")
    ax2.set_ylabel("seconds to error 1e-2 (dashed)")
    ax.set_title("n = 16: both axes vs scikit-learn")
    ax.legend(fontsize=7, loc="upper left")
    ax2.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, short runs")
    parser.add_argument("--out", type=Path, help="output directory (default: benchmarks/results; a temporary one with --quick)")
    args = parser.parse_args(argv)
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="fw-rates-")) if args.quick else RESULTS)
    seeds = SEEDS[:2] if args.quick else SEEDS
    started = time.perf_counter()
    rate_steps = {16: 2**10, 32: 2**9} if args.quick else {16: 2**14, 32: 2**13}
    rates = [rate_runs(n, steps, seeds) for n, steps in rate_steps.items()]
    for r in rates:
        print(f"rates n={r['n']}: slopes error {r['error']['fitted_slope_mean']:.2f}, FW gap {r['fw_gap']['fitted_slope_mean']:.2f}, "
              f"population gap {r['population_gap']['fitted_slope_mean']:.2f} (theory {THEORY_GAP_SLOPE})", flush=True)
    budgets = {16: (80_000, 40_000, 30.0), 32: (160_000, 60_000, 60.0), 64: (160_000, 60_000, 90.0)}
    if args.quick:
        budgets = {16: (16_000, 8_000, 5.0)}
    comparison = [both_axes(n, 0.3, seeds, *budgets[n]) for n in budgets]
    at_16 = comparison[0]  # θ = 0.3 at n = 16 is already measured
    sweep = [at_16 if theta == at_16["theta"] else both_axes(16, theta, seeds, *budgets[16]) for theta in THETAS]
    report = {
        "benchmark": "fw_dictionary_rates",
        "quick": args.quick,
        "paper": "Xue & Lau, Online Orthogonal Dictionary Learning Based on Frank-Wolfe Method, arXiv 2103.01484",
        "seeds": seeds,
        "target_error": TARGET,
        "setup": {"batch": BATCH, "noise": 0.0, "mbdl": {"alpha": MBDL_ALPHA, "batch_size": MBDL_BATCH},
                  "slope_fit": "least squares of log10 y on log10 t over t >= T/100, per seed; mean and std over seeds",
                  "theory": "Frank-Wolfe gap O(ln t / t^(1/4)): slope -1/4"},
        "rates": rates,
        "both_axes_vs_mbdl": comparison,
        "sparsity_sweep": sweep,
    }
    report["elapsed_seconds"] = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "fw_dictionary_rates.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    plot(report, out_dir / "fw_dictionary_rates.png")
    print(f"wrote {path} in {report['elapsed_seconds']:.0f} s")
    return report


if __name__ == "__main__":
    main()
