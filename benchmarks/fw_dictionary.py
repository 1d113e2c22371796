"""Frank-Wolfe online orthogonal dictionary learning: recovery, memory and real sensor data.

1. Recovery (synthetic): ``y = D₀ x + σ ε`` with ``D₀`` a random orthogonal
   ``n × n`` matrix, ``x`` Bernoulli(0.3)-Gaussian, ``σ ∈ {0, 0.1}``, for
   ``n ∈ {16, 32, 64}``. Recovery error ``1 − ‖DᵀD₀‖₄⁴ / n`` against samples and
   against wall time, in the same process, for

   - ``FrankWolfeODL`` (mini-batches of 16, defaults; one pass over the stream),
     and the same with the larger steps ``step_power = 0.5`` (``γ_t = (t+1)^{−1/2}``
     instead of the reconstruction's ``(t+1)^{−3/4}``): sooner to 1e-2, higher
     final error;
   - the same ``FrankWolfeODL`` with ``polar_solver="svd"`` (the oracle
     ``S_t = U Vᵀ`` and the read-out by SVD instead of the polynomial
     iteration), run in lockstep with the default on the same mini-batches:
     time per step of each, and the largest differences between their
     iterates, read-outs and errors over the run (rounding error expected);
   - batch MSP (Zhai et al.): ℓ4 maximisation over the orthogonal group,
     ``D ← polar(Y (DᵀY)^{∘3})``, over all ``N`` stored samples, for several ``N``,
     from a random orthogonal start until it stops moving (or 100 iterations);
   - scikit-learn ``MiniBatchDictionaryLearning`` (Mairal et al.'s online
     dictionary learning, ``n`` atoms, ``partial_fit`` per mini-batch). Its
     ``alpha`` and batch size are picked by a pilot run at n = 16 (least time
     to the target error; recorded in the JSON); its atoms are unit-norm columns, so the same metric applies.

   Times cover learning only (data generation and error evaluation excluded),
   BLAS on one thread for everyone. Target: error 1e-2 at least 10× sooner in
   wall time than ``MiniBatchDictionaryLearning``.
2. Memory: tracemalloc peak while generating and learning streams of 10³…10⁶
   samples with FW (the stream made 1,000 samples at a time), the size of its
   state, and what batch MSP must store (and its peak, up to 10⁵ samples).
3. Gradient averaging: FW with and without it (``averaging_power`` 0.5 vs 0):
   error and smallest singular value of the relaxed iterate.
4. Real sensor data: river's bundled NASA Shuttle readings (9 numeric
   attributes, standardised, random split 40,000 / 9,097). Relative
   reconstruction error ``Σ‖y − ŷ‖² / Σ‖y‖²`` on the held-out part against the
   number ``k`` of non-zero code entries: FW dictionary (one online pass) with
   top-k codes and with its thresholded codes; PCA with its first k components
   (the classical baseline); the PCA basis with top-k codes; MSP (batch) top-k;
   the raw coordinates top-k.

    flock /tmp/streamlearn-bench.lock python benchmarks/fw_dictionary.py [--quick]

Writes benchmarks/results/fw_dictionary.json and fw_dictionary_{samples,time,
memory,shuttle}.png (``--quick``: n = 16 only, short budgets, into a temporary
directory unless ``--out`` says where).
"""

from __future__ import annotations

import os

# One core: set before NumPy / scikit-learn load their BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from river import datasets  # noqa: E402
from sklearn.decomposition import MiniBatchDictionaryLearning  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from streamlearn.learners.dictionary import (  # noqa: E402
    FrankWolfeODL,
    make_sparse_orthogonal,
    polar,
    random_orthogonal,
    recovery_error,
)

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "fw_dictionary"
TARGET = 1e-2
THETA = 0.3
CHUNK = 4096  # samples generated at a time (stream memory stays constant)

warnings.filterwarnings("ignore", category=ConvergenceWarning)


# --------------------------------------------------------------------------- streams


class Stream:
    """A reproducible synthetic stream ``y = D₀x + σε``, generated chunk by chunk."""

    def __init__(self, n: int, noise: float, seed: int, theta: float = THETA):
        self.n, self.noise, self.seed, self.theta = n, noise, seed, theta
        self.D0 = random_orthogonal(n, np.random.default_rng([seed, 0]))

    def chunks(self, total: int, size: int = CHUNK):
        rng = np.random.default_rng([self.seed, 1])
        for start in range(0, total, size):
            yield make_sparse_orthogonal(min(size, total - start), self.n, self.theta, self.noise, self.D0, rng)[0]

    def head(self, count: int) -> np.ndarray:
        return np.concatenate(list(self.chunks(count)))


class Curve:
    """Error evaluations of one run: log-spaced points for the plots, plus the first one below the target."""

    def __init__(self, evaluations: int):
        self.keep = {int(v) for v in np.unique(np.geomspace(1, max(evaluations, 1), 60).round())}
        self.points: list[dict] = []
        self.hit: dict | None = None
        self.last: dict | None = None
        self.count = 0

    def add(self, samples: int, seconds: float, error: float) -> None:
        self.count += 1
        self.last = {"samples": samples, "seconds": seconds, "error": error}
        first_hit = self.hit is None and error < TARGET
        if first_hit:
            self.hit = self.last
        if first_hit or self.count in self.keep:
            self.points.append(self.last)

    def result(self) -> dict:
        if self.points[-1] is not self.last:
            self.points.append(self.last)
        return {"curve": self.points, "final_error": self.last["error"],
                "samples_to_target": None if self.hit is None else self.hit["samples"],
                "seconds_to_target": None if self.hit is None else self.hit["seconds"]}


# --------------------------------------------------------------------------- methods


def run_fw(stream: Stream, max_samples: int, batch: int = 16, check_every: int = 10,
           solvers: tuple[str, ...] = ("iterative",), **params) -> dict[str, dict]:
    """One pass of FrankWolfeODL per polar solver, in lockstep on the same blocks of check_every mini-batches
    (each model timed on its own); the error is evaluated after every block (untimed). With two solvers,
    ``"agreement"`` holds the largest differences between their iterates, read-outs and errors."""
    models = {solver: FrankWolfeODL(n_features=stream.n, batch_size=batch, seed=stream.seed + 100, polar_solver=solver, **params)
              for solver in solvers}
    step_samples = check_every * batch
    curves = {solver: Curve(max_samples // step_samples) for solver in solvers}
    elapsed = dict.fromkeys(solvers, 0.0)
    agreement = {"relaxed_dictionary": 0.0, "dictionary": 0.0, "error": 0.0}
    pending = np.zeros((0, stream.n))
    for chunk in stream.chunks(max_samples):
        pending = np.concatenate([pending, chunk])
        while len(pending) >= step_samples:
            block, pending = pending[:step_samples], pending[step_samples:]
            for solver, model in models.items():
                t0 = time.perf_counter()
                model.learn_many(block)
                elapsed[solver] += time.perf_counter() - t0
                curves[solver].add(model.n_samples_seen, elapsed[solver], recovery_error(model.dictionary, stream.D0))
            if len(models) == 2:
                first, second = models.values()
                for key, a, b in (("relaxed_dictionary", first.relaxed_dictionary, second.relaxed_dictionary),
                                  ("dictionary", first.dictionary, second.dictionary),
                                  ("error", *(curve.last["error"] for curve in curves.values()))):
                    agreement[key] = max(agreement[key], float(np.abs(a - b).max()))
    results = {solver: {**curves[solver].result(), "seconds_per_sample": elapsed[solver] / model.n_samples_seen,
                        "seconds_per_step": elapsed[solver] / model.n_steps}
               for solver, model in models.items()}
    if len(models) == 2:
        results["agreement"] = agreement
    return results


def msp(Y: np.ndarray, D: np.ndarray, max_iter: int = 100, tol: float = 1e-10):
    """Batch ℓ4 maximisation over O(n) (MSP); yields (iteration, seconds, D) after each iteration."""
    elapsed = 0.0
    for iteration in range(1, max_iter + 1):
        t0 = time.perf_counter()
        Z = Y @ D  # rows are samples: Z = (DᵀY)ᵀ
        new = polar(Y.T @ Z**3)
        moved = np.linalg.norm(new - D)
        D = new
        elapsed += time.perf_counter() - t0
        yield iteration, elapsed, D
        if moved < tol:
            return


def run_msp(stream: Stream, sizes: list[int]) -> dict:
    data = stream.head(max(sizes))
    start = random_orthogonal(stream.n, np.random.default_rng([stream.seed, 2]))
    runs = []
    for N in sizes:
        curve = [{"iteration": it, "seconds": s, "error": recovery_error(D, stream.D0)} for it, s, D in msp(data[:N], start)]
        runs.append({"stored_samples": N, "stored_bytes": N * stream.n * 8, "curve": curve, "final_error": curve[-1]["error"],
                     "iterations": curve[-1]["iteration"], "seconds": curve[-1]["seconds"],
                     "seconds_to_target": next((p["seconds"] for p in curve if p["error"] < TARGET), None)})
    reached = [r["seconds_to_target"] for r in runs if r["seconds_to_target"] is not None]
    return {"runs": runs, "seconds_to_target": min(reached) if reached else None,
            "samples_to_target": min((r["stored_samples"] for r in runs if r["final_error"] < TARGET), default=None)}


def run_mbdl(stream: Stream, max_samples: int, alpha: float, batch: int, max_seconds: float,
             stop_at_target: bool = False) -> dict:
    """partial_fit per mini-batch; the error is evaluated about every 160 samples (untimed).
    With ``stop_at_target`` the run ends at the first evaluation below the target error."""
    n, check_every = stream.n, max(1, 160 // batch)
    model = MiniBatchDictionaryLearning(n_components=n, alpha=alpha, batch_size=batch, random_state=stream.seed)
    curve, elapsed, seen, pending = Curve(max_samples // (batch * check_every)), 0.0, 0, np.zeros((0, n))
    for chunk in stream.chunks(max_samples):
        pending = np.concatenate([pending, chunk])
        while len(pending) >= batch and elapsed <= max_seconds:
            block, pending = pending[:batch], pending[batch:]
            t0 = time.perf_counter()
            model.partial_fit(block)
            elapsed += time.perf_counter() - t0
            seen += batch
            if (seen // batch) % check_every == 0:
                curve.add(seen, elapsed, recovery_error(model.components_.T, stream.D0))
                if stop_at_target and curve.hit is not None:
                    break
        if elapsed > max_seconds or (stop_at_target and curve.hit is not None):
            break
    if curve.last is None or curve.last["samples"] != seen:
        curve.add(seen, elapsed, recovery_error(model.components_.T, stream.D0))
    return {**curve.result(), "samples_run": seen, "seconds_run": elapsed,
            "stopped_by": "time budget" if elapsed > max_seconds else "target" if stop_at_target and curve.hit else "sample budget", "alpha": alpha, "batch_size": batch}


def mbdl_pilot(quick: bool) -> dict:
    """Pick MiniBatchDictionaryLearning's alpha and batch size at n = 16: the least time to the target error
    (within a sample budget; if none reaches it, the lowest final error)."""
    stream = Stream(16, 0.0, seed=7)
    budget = 4096 if quick else 32768
    grid = [(0.5, 16)] if quick else [(a, b) for a in (0.2, 0.5, 1.0) for b in (16, 256)]
    trials = []
    for alpha, batch in grid:
        run = run_mbdl(stream, budget, alpha, batch, max_seconds=60)
        trials.append({"alpha": alpha, "batch_size": batch, "samples": run["samples_run"], "final_error": run["final_error"],
                       "seconds": run["seconds_run"], "seconds_to_target": run["seconds_to_target"]})
    reached = [t for t in trials if t["seconds_to_target"] is not None]
    best = min(reached, key=lambda t: t["seconds_to_target"]) if reached else min(trials, key=lambda t: t["final_error"])
    return {"budget_samples": budget, "trials": trials, "chosen": {"alpha": best["alpha"], "batch_size": best["batch_size"]}}


# --------------------------------------------------------------------------- experiments


def recovery_experiment(quick: bool, pilot: dict) -> list[dict]:
    dims = [16] if quick else [16, 32, 64]
    fw_samples = {16: 80_000, 32: 160_000, 64: 480_000}
    mbdl_seconds = {16: 20, 32: 40, 64: 60}
    msp_sizes = {16: [1_000, 2_000, 5_000, 10_000, 20_000, 50_000], 32: [2_000, 5_000, 10_000, 20_000, 50_000, 100_000],
                 64: [5_000, 10_000, 20_000, 50_000, 100_000, 200_000]}
    alpha, batch = pilot["chosen"]["alpha"], pilot["chosen"]["batch_size"]
    rows = []
    for n in dims:
        for noise in (0.0, 0.1):
            stream = Stream(n, noise, seed=n)
            fw_max = 16_000 if quick else fw_samples[n]
            print(f"n={n} noise={noise}: FW ...", flush=True)
            both = run_fw(stream, fw_max, solvers=("iterative", "svd"))
            fw, fw_svd = both["iterative"], both["svd"]
            fw_fast = run_fw(stream, fw_max, step_power=0.5)["iterative"]
            print(f"  FW error {fw['final_error']:.2e}, 1e-2 at {fw['seconds_to_target']} s (SVD oracle:"
                  f" {fw_svd['seconds_to_target']} s, {fw_svd['seconds_per_step'] / fw['seconds_per_step']:.2f}x slower per step,"
                  f" iterates {both['agreement']['relaxed_dictionary']:.1e} apart); MSP ...", flush=True)
            ms = run_msp(stream, [1_000, 5_000] if quick else msp_sizes[n])
            print(f"  MSP 1e-2 at {ms['seconds_to_target']} s; MiniBatchDictionaryLearning ...", flush=True)
            mb = run_mbdl(stream, fw_max, alpha, batch, max_seconds=5 if quick else mbdl_seconds[n])
            print(f"  MBDL error {mb['final_error']:.2e}, 1e-2 at {mb['seconds_to_target']} s", flush=True)
            row = {"n": n, "noise": noise, "fw": fw, "fw_svd_oracle": fw_svd, "oracle_agreement": both["agreement"],
                   "oracle_speedup": fw_svd["seconds_per_step"] / fw["seconds_per_step"],
                   "fw_step_power_0.5": fw_fast, "msp": ms, "mbdl": mb}
            if fw["seconds_to_target"] is not None:
                if mb["seconds_to_target"] is not None:
                    row["speedup_vs_mbdl"] = mb["seconds_to_target"] / fw["seconds_to_target"]
                else:  # never reached within its budget: a lower bound
                    row["speedup_vs_mbdl_at_least"] = mb["seconds_run"] / fw["seconds_to_target"]
                if ms["seconds_to_target"] is not None:
                    row["speedup_vs_msp"] = ms["seconds_to_target"] / fw["seconds_to_target"]
            if fw_svd["seconds_to_target"] is not None and mb["seconds_to_target"] is not None:
                row["speedup_vs_mbdl_svd_oracle"] = mb["seconds_to_target"] / fw_svd["seconds_to_target"]
            if fw_fast["seconds_to_target"] is not None and mb["seconds_to_target"] is not None:
                row["speedup_vs_mbdl_step_power_0.5"] = mb["seconds_to_target"] / fw_fast["seconds_to_target"]
            rows.append(row)
    return rows


def memory_experiment(quick: bool) -> dict:
    n = 16
    lengths = [1_000, 10_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    stream = Stream(n, 0.0, seed=3)

    rows = []
    for length in lengths:
        model = FrankWolfeODL(n_features=n)
        chunks = stream.chunks(length, size=1_000)
        tracemalloc.start()
        # The peak includes generating the stream, one 1,000-sample chunk (128 KB) at a time.
        while (chunk := next(chunks, None)) is not None:
            model.learn_many(chunk)
            del chunk
        fw_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        state_bytes = sum(v.nbytes if isinstance(v, np.ndarray) else len(str(v)) for v in model.state_dict().values())
        row = {"samples": length, "fw_peak_bytes": fw_peak, "fw_state_bytes": state_bytes, "msp_stored_bytes": length * n * 8}
        if length <= 100_000:
            data = stream.head(length)
            tracemalloc.start()
            stored = data.copy()  # MSP needs every sample at once
            for _ in msp(stored, np.eye(n), max_iter=3):
                pass
            row["msp_peak_bytes"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            del data, stored
        rows.append(row)
        print(f"memory: {length} samples, FW peak {fw_peak} B, state {state_bytes} B", flush=True)
    return {"n": n, "rows": rows}


def averaging_experiment(quick: bool) -> list[dict]:
    n, steps = 16, (1000 if quick else 5000)
    rows = []
    for power in (0.5, 0.0):
        for seed in range(1 if quick else 3):
            stream = Stream(n, 0.0, seed=50 + seed)
            model = FrankWolfeODL(n_features=n, averaging_power=power, seed=seed)
            for chunk in stream.chunks(steps * 16):
                model.learn_many(chunk)
            rows.append({"averaging_power": power, "seed": seed, "steps": steps,
                         "error": recovery_error(model.dictionary, stream.D0),
                         "min_singular_value": float(np.linalg.svd(model.relaxed_dictionary, compute_uv=False).min())})
    return rows


def relative_errors(Y: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """``mean``: mean over samples of ‖y − ŷ‖²/‖y‖² (the processor's metric); ``total``: Σ‖y − ŷ‖² / Σ‖y‖²."""
    residual = np.sum((Y - reconstruction) ** 2, axis=1)
    energy = np.sum(Y**2, axis=1)
    return {"mean": float(np.mean(residual[energy > 0] / energy[energy > 0])), "total": float(residual.sum() / energy.sum())}


def top_k(codes: np.ndarray, k: int) -> np.ndarray:
    """The k largest-magnitude entries of each code, the others zeroed."""
    kept = np.zeros_like(codes)
    index = np.argsort(-np.abs(codes), axis=1)[:, :k]
    np.put_along_axis(kept, index, np.take_along_axis(codes, index, axis=1), axis=1)
    return kept


def shuttle_experiment(quick: bool) -> dict:
    raw = np.array([[x[f"f{i}"] for i in range(1, 10)] for x, _ in datasets.Shuttle()], dtype=float)
    rng = np.random.default_rng(0)
    raw = raw[rng.permutation(len(raw))]
    n_train = 10_000 if quick else 40_000
    train, test = raw[:n_train], raw[n_train:]
    mean, std = train.mean(axis=0), train.std(axis=0)
    train, test = (train - mean) / std, (test - mean) / std
    n = train.shape[1]

    t0 = time.perf_counter()
    fw = FrankWolfeODL(n_features=n, seed=0)
    fw.learn_many(train)
    fw_seconds = time.perf_counter() - t0
    _, _, vt = np.linalg.svd(train - train.mean(axis=0), full_matrices=False)
    pca = vt.T  # principal directions as columns, by decreasing variance
    t0 = time.perf_counter()
    msp_D = list(msp(train, random_orthogonal(n, np.random.default_rng(1))))[-1][2]
    msp_seconds = time.perf_counter() - t0

    ks = list(range(1, n + 1))
    bases = {"fw_top_k": fw.dictionary, "pca_basis_top_k": pca, "msp_top_k": msp_D, "raw_coordinates_top_k": np.eye(n)}
    curves = {name: [relative_errors(test, top_k(test @ B, k) @ B.T) for k in ks] for name, B in bases.items()}
    centre = train.mean(axis=0)
    curves["pca_first_k"] = [relative_errors(test, centre + (test - centre) @ pca[:, :k] @ pca[:, :k].T) for k in ks]
    thresholded = []
    for threshold in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2):
        model = FrankWolfeODL(n_features=n, threshold=threshold)
        model.load_state_dict(fw.state_dict())
        codes = model.transform_many(test)
        thresholded.append({"threshold": threshold, "mean_nonzeros": float(np.count_nonzero(codes) / len(codes)),
                            **relative_errors(test, model.inverse_transform_many(codes))})
    return {"n_features": n, "train_samples": len(train), "test_samples": len(test), "k": ks, "errors": curves,
            "fw_thresholded": thresholded, "fw_seconds": fw_seconds, "msp_seconds": msp_seconds,
            "fw_relaxation_gap": float(np.linalg.norm(fw.relaxed_dictionary - fw.dictionary) / np.sqrt(n))}


# --------------------------------------------------------------------------- plots


def plot_recovery(rows: list[dict], out: Path, stem: str) -> list[str]:
    files = []
    for axis_key, label in (("samples", "samples"), ("seconds", "wall time [s]")):
        fig, axes = plt.subplots(2, len(rows) // 2, figsize=(4.5 * (len(rows) // 2), 7), squeeze=False)
        for i, row in enumerate(rows):
            ax = axes[i % 2][i // 2]
            for key, name, style in (("fw", "Frank-Wolfe ODL (online)", "C0-"),
                                     ("fw_svd_oracle", "Frank-Wolfe ODL, SVD oracle", "C0--"),
                                     ("fw_step_power_0.5", "Frank-Wolfe ODL, step_power 0.5", "C0:"),
                                     ("mbdl", "MiniBatchDictionaryLearning", "C1-")):
                curve = row[key]["curve"]
                ax.plot([p[axis_key] for p in curve], [max(p["error"], 1e-7) for p in curve], style, label=name)
            ms = row["msp"]["runs"]
            if axis_key == "samples":
                ax.plot([r["stored_samples"] for r in ms], [max(r["final_error"], 1e-7) for r in ms], "C2o--",
                        label="batch MSP (final, N stored)")
            else:
                big = ms[-1]
                ax.plot([p["seconds"] for p in big["curve"]], [max(p["error"], 1e-7) for p in big["curve"]], "C2--",
                        label=f"batch MSP, N = {big['stored_samples']}")
            ax.axhline(TARGET, color="grey", lw=0.8, ls=":")
            ax.set(xscale="log", yscale="log", title=f"n = {row['n']}, noise = {row['noise']}", xlabel=label,
                   ylabel="1 − ‖DᵀD₀‖₄⁴/n")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{stem}_{axis_key if axis_key == 'samples' else 'time'}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path.name)
    return files


def plot_memory(memory: dict, out: Path, stem: str) -> str:
    rows = memory["rows"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["samples"] for r in rows], [r["fw_peak_bytes"] for r in rows], "C0o-", label="Frank-Wolfe ODL, tracemalloc peak")
    ax.plot([r["samples"] for r in rows], [r["fw_state_bytes"] for r in rows], "C0s:", label="Frank-Wolfe ODL, state_dict size")
    small = [r for r in rows if "msp_peak_bytes" in r]
    ax.plot([r["samples"] for r in small], [r["msp_peak_bytes"] for r in small], "C2o-", label="batch MSP, peak")
    ax.set(xscale="log", yscale="log", xlabel="stream length [samples]", ylabel="bytes", title=f"memory, n = {memory['n']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"{stem}_memory.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def plot_shuttle(shuttle: dict, out: Path, stem: str) -> str:
    labels = {"fw_top_k": "FW ODL (online), top-k codes", "pca_first_k": "PCA, first k components",
              "pca_basis_top_k": "PCA basis, top-k codes", "msp_top_k": "batch MSP, top-k codes",
              "raw_coordinates_top_k": "raw coordinates, top-k"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, kind, title in ((axes[0], "mean", "mean of ‖y − ŷ‖²/‖y‖²"), (axes[1], "total", "Σ‖y − ŷ‖² / Σ‖y‖²")):
        for i, (key, label) in enumerate(labels.items()):
            ax.plot(shuttle["k"], [max(e[kind], 1e-6) for e in shuttle["errors"][key]], f"C{i}o-", label=label, ms=4)
        th = shuttle["fw_thresholded"]
        ax.plot([t["mean_nonzeros"] for t in th], [max(t[kind], 1e-6) for t in th], "C0x--", label="FW ODL, thresholded codes")
        ax.set(yscale="log", xlabel="non-zero code entries per sample (k)", ylabel=f"held-out {title}",
               title="NASA Shuttle sensor readings (standardised)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = out / f"{stem}_shuttle.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


# --------------------------------------------------------------------------- main


def summarise(rows: list[dict]) -> list[dict]:
    table = []
    for row in rows:
        fw, mb, ms = row["fw"], row["mbdl"], row["msp"]
        table.append({
            "n": row["n"], "noise": row["noise"],
            "fw_seconds_to_1e-2": fw["seconds_to_target"], "fw_samples_to_1e-2": fw["samples_to_target"],
            "fw_final_error": fw["final_error"],
            "mbdl_seconds_to_1e-2": mb["seconds_to_target"], "mbdl_samples_to_1e-2": mb["samples_to_target"],
            "mbdl_final_error": mb["final_error"],
            "mbdl_run": f"{mb['samples_run']} samples in {mb['seconds_run']:.1f} s",
            "msp_seconds_to_1e-2": ms["seconds_to_target"], "msp_min_stored_samples_for_1e-2": ms["samples_to_target"],
            "speedup_vs_mbdl": row.get("speedup_vs_mbdl"), "speedup_vs_mbdl_at_least": row.get("speedup_vs_mbdl_at_least"),
            "speedup_vs_msp": row.get("speedup_vs_msp"),
            "fw_svd_oracle_seconds_to_1e-2": row["fw_svd_oracle"]["seconds_to_target"],
            "speedup_vs_mbdl_svd_oracle": row.get("speedup_vs_mbdl_svd_oracle"),
            "fw_microseconds_per_step": 1e6 * fw["seconds_per_step"],
            "fw_svd_oracle_microseconds_per_step": 1e6 * row["fw_svd_oracle"]["seconds_per_step"],
            "oracle_speedup": row["oracle_speedup"],
            "oracle_max_iterate_difference": row["oracle_agreement"]["relaxed_dictionary"],
            "oracle_max_error_difference": row["oracle_agreement"]["error"],
            "fw_step_power_0.5_seconds_to_1e-2": row["fw_step_power_0.5"]["seconds_to_target"],
            "fw_step_power_0.5_final_error": row["fw_step_power_0.5"]["final_error"],
            "speedup_vs_mbdl_step_power_0.5": row.get("speedup_vs_mbdl_step_power_0.5"),
        })
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 16 only, short budgets (well under a minute)")
    parser.add_argument("--out", type=Path, help="output directory (default: benchmarks/results; a temporary one with --quick)")
    args = parser.parse_args()
    out = args.out or (Path(tempfile.mkdtemp(prefix="fw-dictionary-bench-")) if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    sections: dict[str, float] = {}

    def timed(name, function, *a):
        t0 = time.perf_counter()
        value = function(*a)
        sections[name] = time.perf_counter() - t0
        return value

    pilot = timed("mbdl_pilot", mbdl_pilot, args.quick)
    print("MiniBatchDictionaryLearning pilot:", pilot["chosen"], flush=True)
    rows = timed("recovery", recovery_experiment, args.quick, pilot)
    memory = timed("memory", memory_experiment, args.quick)
    averaging = timed("averaging", averaging_experiment, args.quick)
    shuttle = timed("shuttle", shuttle_experiment, args.quick)

    summary = summarise(rows)
    result = {
        "benchmark": NAME, "quick": args.quick, "target_error": TARGET, "theta": THETA,
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
                    "processor": platform.processor() or platform.machine(), "blas_threads": 1},
        "summary": summary, "mbdl_pilot": pilot, "recovery": rows, "memory": memory, "averaging": averaging, "shuttle": shuttle,
        "section_seconds": sections, "total_seconds": time.perf_counter() - started,
    }
    result["plots"] = [*plot_recovery(rows, out, NAME), plot_memory(memory, out, NAME), plot_shuttle(shuttle, out, NAME)]
    path = out / f"{NAME}.json"
    path.write_text(json.dumps(result, indent=1))

    def fmt(value, spec=".3g"):
        return "never" if value is None else format(value, spec)

    print(f"\nrecovery: seconds (learning only, one BLAS thread) to error {TARGET}; speed-up = MBDL time / FW time")
    for s in summary:
        lower = s["speedup_vs_mbdl_at_least"]
        speedup = fmt(s["speedup_vs_mbdl"], ".1f") if lower is None else f">= {lower:.1f} (MBDL never: {s['mbdl_run']})"
        print(f"  n={s['n']:>2} noise={s['noise']}: FW {fmt(s['fw_seconds_to_1e-2'])} s / {fmt(s['fw_samples_to_1e-2'], 'd')} samples"
              f" (final {s['fw_final_error']:.1e}), MBDL {fmt(s['mbdl_seconds_to_1e-2'])} s, MSP {fmt(s['msp_seconds_to_1e-2'])} s"
              f" (>= {fmt(s['msp_min_stored_samples_for_1e-2'], 'd')} stored); speed-up {speedup}"
              f" (SVD oracle: {fmt(s['fw_svd_oracle_seconds_to_1e-2'])} s, speed-up {fmt(s['speedup_vs_mbdl_svd_oracle'], '.1f')};"
              f" {s['fw_microseconds_per_step']:.0f} vs {s['fw_svd_oracle_microseconds_per_step']:.0f} µs per step,"
              f" iterates {s['oracle_max_iterate_difference']:.0e} apart);"
              f" step_power 0.5: {fmt(s['fw_step_power_0.5_seconds_to_1e-2'])} s (final {s['fw_step_power_0.5_final_error']:.1e},"
              f" speed-up {fmt(s['speedup_vs_mbdl_step_power_0.5'], '.1f')})")
    print("memory (n = 16):", [(r["samples"], r["fw_peak_bytes"], r["fw_state_bytes"]) for r in memory["rows"]])
    print("averaging:", [(r["averaging_power"], f"{r['error']:.1e}", round(r["min_singular_value"], 3)) for r in averaging])
    print("shuttle, mean relative error at k = 1..3:",
          {k: [round(e["mean"], 4) for e in v[:3]] for k, v in shuttle["errors"].items()})
    print(f"wrote {path} ({result['total_seconds']:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in sections.items()) + ")")


if __name__ == "__main__":
    main()
