"""Run records as tidy rows, written atomically.

A row is one number: (run, step, tokens, task, metric, value) plus the run's
per-run hyperparameters. Files are written to a temporary name in the same
folder and renamed, so a crash never leaves a half-written table; a temporary left by a
kill is removed when its file is next written. A folder of results counts as complete
only when its record (``done.json``, written last) vouches for every file in it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

FIELDS = ("run", "seed", "lr", "weight_decay", "dropout", "step", "tokens", "task", "metric", "value")
RECORD = "done.json"
# what tempfile.mkstemp(prefix=".<name>.", suffix=".tmp") names: 8 random [a-z0-9_]
_TMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def is_stale_tmp(name: str) -> bool:
    """True for the name of a temporary ``atomic_write_bytes`` makes (left behind by a kill)."""
    return bool(_TMP.match(name))


def clean_stale_tmp(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporaries a killed ``atomic_write_bytes`` left in ``folder`` (only
    those of file ``name``, if given); nothing else is touched. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for p in folder.iterdir():
        m = _TMP.match(p.name)
        if m and (name is None or m["name"] == name) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it: never half-written.
    Temporaries of ``path`` left by an earlier kill are removed first (one writer per file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(path.parent, path.name)
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


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_record(folder: str | os.PathLike, files: Sequence[str], **extra) -> None:
    """Write ``folder/done.json`` (call it LAST): size and sha256 of each named file there,
    plus ``extra``; the folder counts as complete only while every file still matches."""
    folder = Path(folder)
    write_json(folder / RECORD, {**extra, "files": {
        n: {"bytes": (folder / n).stat().st_size, "sha256": sha256_file(folder / n)} for n in files}})


def record_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder``'s files do not verify against its ``done.json``, naming the file; None if they do."""
    folder = Path(folder)
    record = folder / RECORD
    if not folder.is_dir():
        return f"{folder} does not exist"
    try:
        files = json.loads(record.read_text())["files"]
        wanted = {str(n): (int(w["bytes"]), str(w["sha256"])) for n, w in files.items()}
    except FileNotFoundError:
        return f"{record} is missing (the run was stopped before its records were complete)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{record} is damaged (not the record run_sweep writes)"
    for name, (size, digest) in sorted(wanted.items()):
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != size or sha256_file(path) != digest:
            return f"{path} does not match {RECORD} ({path.stat().st_size} bytes, recorded {size}): " \
                   "truncated, damaged or edited"
    return None


def _num(v: str):
    """A CSV cell as int, else float, else the text."""
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def train_rows(result, runs, run_ids: Sequence[str], tokens_per_step: int, stopping: bool = False) -> list[dict]:
    """Tidy rows of a ``TrainResult`` (eval metrics per task, and chunk-mean training loss).

    ``stopping`` (the runs trained under ``TrainConfig.stop_when``): one more row per run, task
    "train", metric "stopped", value 1 at its stop step, or 0 at the last step if never met."""
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
        if stopping:
            stop, last = int(result.stop_step[e]), int(result.eval_steps[-1])
            met = stop <= last
            rows.append({**base, "step": stop if met else last, "tokens": (stop if met else last) * tokens_per_step,
                         "task": "train", "metric": "stopped", "value": float(met)})
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
