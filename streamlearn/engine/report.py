"""The replay report: ``report.json`` and PNG plots of the metrics over time."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["plot_history", "write_report"]


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


def plot_history(history: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> list[str]:
    """One panel per metric against events; returns the metric names plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in (history[0] if history else {}) if k != "events"]
    names = [n for n in names if all(isinstance(h.get(n), int | float) for h in history)]
    if not names:
        return []
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.6 * len(names)), sharex=True, squeeze=False)
    events = [h["events"] for h in history]
    for ax, name in zip(axes[:, 0], names, strict=True):
        ax.plot(events, [h[name] for h in history], lw=1.5)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("events")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return names


def write_report(report: dict[str, Any], directory: str | os.PathLike) -> Path:
    """Write ``report.json`` and ``metrics.png`` into ``directory``; returns the JSON path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plotted = plot_history(report.get("history", []), directory / "metrics.png", title=report.get("learner", ""))
    if plotted:
        report = {**report, "plots": ["metrics.png"]}
    path = directory / "report.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_json_safe(report), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
