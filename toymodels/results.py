"""Run records as tidy rows, written atomically.

A row is one number: (run, step, tokens, task, metric, value) plus the run's
per-run hyperparameters. Files are written to a temporary name in the same
folder and renamed, so a crash never leaves a half-written table.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

FIELDS = ("run", "seed", "lr", "weight_decay", "dropout", "step", "tokens", "task", "metric", "value")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; results are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``atomic_write_bytes`` of UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Indented, key-sorted JSON, atomically; numpy scalars and arrays become numbers and lists."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(x):
    """JSON stand-in for what json cannot write (numpy values; anything else as text)."""
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_rows(path: str | os.PathLike, rows: Iterable[dict], fields: Sequence[str] | None = None,
               digits: int | None = None) -> None:
    """Rows as CSV, atomically; ``digits``: floats rounded to that many significant digits
    (for committed summary tables, where full repr precision only adds bytes)."""
    rows = list(rows)
    if digits is not None:
        rows = [{k: float(f"{v:.{digits}g}") if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    fields = list(fields or (rows[0].keys() if rows else FIELDS))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Rows back, with numeric columns as numbers."""
    with open(path, newline="") as f:
        return [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _num(v: str):
    """A CSV cell as int, else float, else the text."""
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def train_rows(result, runs, run_ids: Sequence[str], tokens_per_step: int) -> list[dict]:
    """Tidy rows of a ``TrainResult`` (eval metrics per task, and chunk-mean training loss)."""
    hp = {f: np.asarray(getattr(runs, f)) for f in ("seed", "lr", "weight_decay", "dropout")}
    rows = []
    for e, rid in enumerate(run_ids):
        base = {"run": rid, **{f: hp[f][e].item() for f in hp}}
        for task, mets in result.history.items():
            for metric, vals in mets.items():
                for j, step in enumerate(result.eval_steps):
                    rows.append({**base, "step": int(step), "tokens": int(step) * tokens_per_step,
                                 "task": task, "metric": metric, "value": float(vals[e, j])})
        for j, step in enumerate(result.chunk_ends):
            rows.append({**base, "step": int(step), "tokens": int(step) * tokens_per_step,
                         "task": "train", "metric": "train_loss", "value": float(result.train_loss[e, j])})
    return rows


def repro_record() -> dict:
    """What is needed to rerun a results folder: command, code version, packages, device."""
    import importlib.metadata as md
    import platform
    import sys

    import jax

    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy", "matplotlib", "tyro"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"command": [sys.executable.rsplit("/", 1)[-1], *sys.argv], "cwd": os.getcwd(),
            "code_version": code_version(), "python": platform.python_version(),
            "platform": platform.platform(), "packages": versions,
            "backend": jax.default_backend(), "devices": [d.device_kind for d in jax.devices()],
            "device_count": jax.device_count(), "process_count": jax.process_count()}


def code_version() -> str:
    """The git commit the code runs from (with '+dirty' for uncommitted changes), if known."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("+dirty" if dirty else "")) if rev else "unknown"
