"""The replay report: ``report.json`` and PNG plots of the metrics over time."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from streamlearn.engine.processor import split_windowed_name
from streamlearn.redact import redact

__all__ = ["plot_curves", "write_report"]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return value


def _panels(series: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Metric keys grouped by panel: a metric's cumulative and windowed keys share one."""
    panels: dict[str, list[str]] = {}
    for history in series.values():
        for key in history[0] if history else {}:
            values = [h.get(key) for h in history]
            # A metric is None until it has data (a label delay): those points are gaps.
            if key == "events" or not all(v is None or isinstance(v, int | float) for v in values) or values.count(None) == len(values):
                continue
            keys = panels.setdefault(split_windowed_name(key)[0], [])
            if key not in keys:
                keys.append(key)
    return panels


def plot_curves(series: dict[str, list[dict[str, Any]]], path: str | os.PathLike, title: str = "") -> list[str]:
    """One panel per metric against events, one colour per run in ``series`` (name → history);
    a windowed key (``"Accuracy@1000"``) is drawn solid beside its cumulative value (dashed).
    Returns the panels' metric names (none plotted: no file written)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _panels(series)
    if not panels:
        return []
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), sharex=True, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (name, keys) in zip(axes[:, 0], panels.items(), strict=True):
        for i, (label, history) in enumerate(series.items()):
            events = [h["events"] for h in history]
            for key in keys:
                if key not in (history[0] if history else {}):
                    continue
                window = split_windowed_name(key)[1]
                what = "cumulative" if window is None else f"last {window:,} events"
                ax.plot(
                    events,
                    [math.nan if h.get(key) is None else h[key] for h in history],
                    color=colours[i % len(colours)],
                    lw=1.5 if window is not None else 1.2,
                    ls="--" if window is None and len(keys) > 1 else "-",
                    label=what if len(series) == 1 else f"{label}, {what}",
                )
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if len(keys) > 1 or len(series) > 1:
            ax.legend(fontsize="small")
    axes[-1, 0].set_xlabel("events")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return list(panels)


def write_report(report: dict[str, Any], directory: str | os.PathLike) -> Path:
    """Write ``report.json`` and ``metrics.png`` into ``directory``; returns the JSON path.

    The config, its path and the input are written with their secrets redacted
    (:func:`streamlearn.redact.redact`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # The config is echoed for reproducibility, its secrets are not (docs/security.md).
    report = {**report, **{k: redact(report[k]) for k in ("config", "config_path", "input") if k in report}}
    learner = report.get("learner", "")
    plotted = plot_curves({learner: report.get("history", [])}, directory / "metrics.png", title=learner)
    if plotted:
        report = {**report, "plots": ["metrics.png"]}
    return write_json(report, directory / "report.json")


def write_json(report: dict[str, Any], path: Path) -> Path:
    """Write ``report`` as JSON to ``path`` atomically (temporary name, then rename)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_json_safe(report), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
