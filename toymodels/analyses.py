"""Post-training analyses, computed once and cached beside the results they read.

An analysis of a results folder (probes of a model, per-position losses, a decompiler's
scores, ...) yields tidy rows. ``AnalysisCache(out, name)`` keeps each entry's rows
under ``out/analyses/<name>/<key>.csv`` with a record ``<key>.json`` written last and
atomically: the hash of the config the rows were computed from (e.g. the configs of the
runs analysed and the analysis' own settings) and the row count. An entry is used only
if its record exists, its config hash matches and its table has that many rows; anything
else (a killed write, an edited table, a run retrained with another config) is
recomputed. So a study's analyses resume like its training does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

from toymodels.results import read_rows, write_json, write_rows

_KEY = re.compile(r"^[A-Za-z0-9_.=,+-]+$")


def config_hash(config: Any) -> str:
    """A stable hash of JSON-able data (dataclasses and other objects by their repr)."""
    text = json.dumps(config, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class AnalysisCache:
    """Rows of one named analysis, one entry per key, each valid only for its config."""

    def __init__(self, out: str | os.PathLike, name: str):
        if not _KEY.match(name):
            raise ValueError(f"analysis name {name!r}: use letters, digits and _.=,+-")
        self.folder = Path(out) / "analyses" / name

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not _KEY.match(key) or key in (".", ".."):
            raise ValueError(f"analysis key {key!r}: use letters, digits and _.=,+-")
        return self.folder / f"{key}.csv", self.folder / f"{key}.json"

    def get(self, key: str, config: Any) -> list[dict] | None:
        """The cached rows of ``key`` if they were computed from ``config``; else None."""
        table, record = self._paths(key)
        try:
            rec = json.loads(record.read_text())
            rows = read_rows(table)
        except (OSError, ValueError):
            return None
        if rec.get("config") != config_hash(config) or rec.get("rows") != len(rows):
            return None
        return rows

    def put(self, key: str, config: Any, rows: list[dict]) -> list[dict]:
        """Write ``rows`` as ``key``'s entry for ``config`` (table first, record last)."""
        table, record = self._paths(key)
        if record.exists():
            record.unlink()        # an old record never vouches for a new table
        write_rows(table, rows)
        write_json(record, {"config": config_hash(config), "rows": len(rows)})
        return read_rows(table)

    def rows(self, key: str, config: Any, compute: Callable[[], list[dict]]) -> list[dict]:
        """The cached rows of ``key``, computing (and caching) them if missing or stale."""
        got = self.get(key, config)
        return got if got is not None else self.put(key, config, compute())

    def all_rows(self) -> list[dict]:
        """Every entry's rows whose record vouches for its table (row count), in key order:
        what a summary reads back after the analyses ran (configs were checked then)."""
        rows = []
        for table in sorted(self.folder.glob("*.csv")):
            try:
                rec = json.loads(table.with_suffix(".json").read_text())
                got = read_rows(table)
            except (OSError, ValueError):
                continue
            if rec.get("rows") == len(got):
                rows += got
        return rows

    def missing(self, keys_configs: dict[str, Any]) -> list[str]:
        """The keys (of a {key: config} dict) without a valid entry: what is left to compute."""
        return [k for k, c in keys_configs.items() if self.get(k, c) is None]
