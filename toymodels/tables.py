"""Tidy rows in, the pieces a study's tables are made of out: selections, final values,
per-run curves. Rows are dicts as ``results.read_rows`` and ``store.load_rows`` give them
(run, step, task, metric, value, plus the run's tags)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

ROW_FIELDS = ("step", "tokens", "task", "metric", "value")   # per-row, not per-run, columns


def select(rows: Iterable[dict], **eq) -> list[dict]:
    """The rows whose columns equal every given value: ``select(rows, task="sort", metric="acc")``."""
    return [r for r in rows if all(r[k] == v for k, v in eq.items())]


def final_rows(rows: Iterable[dict], keys: tuple[str, ...] = ("run", "task", "metric")) -> list[dict]:
    """One row per ``keys`` group: the one at the largest step (a run's final value)."""
    last: dict[tuple, dict] = {}
    for r in rows:
        key = tuple(r[k] for k in keys)
        if key not in last or r["step"] > last[key]["step"]:
            last[key] = r
    return list(last.values())


def index_runs(rows: Iterable[dict]) -> dict[str, dict]:
    """run id -> {"tags": the run's columns, "curves": {(task, metric): (steps, values)}}, sorted by step."""
    runs: dict[str, dict] = {}
    for r in rows:
        rec = runs.setdefault(r["run"], {"tags": {k: v for k, v in r.items() if k not in ROW_FIELDS},
                                         "points": {}})
        rec["points"].setdefault((r["task"], r["metric"]), []).append((r["step"], r["value"]))
    for rec in runs.values():
        rec["curves"] = {k: tuple(np.asarray(sorted(pts), dtype=np.float64).T)
                         for k, pts in rec.pop("points").items()}
    return runs


def held_out(rows: Iterable[dict]) -> list[dict]:
    """The evaluation rows (every task but the chunk-mean training loss, task "train")."""
    return [r for r in rows if r["task"] != "train"]
