"""Character-level text: the docstrings of the Python standard library, built offline.

Build (deterministic for a given Python version): walk the stdlib's ``*.py`` files in
sorted order (no site-packages, test suites, idlelib or lib2to3), parse each with
``ast`` (nothing is imported), take module, class and function docstrings in source
order, cleaned like ``inspect.cleandoc``. A document goes to eval when
crc32(path:qualname) % 10 == 0, else to train; each split is its documents joined by
blank lines, encoded with a fixed vocabulary and truncated (train to ``max_chars``,
eval to ``max_chars // 10``). Arrays are cached under ``$TOYMODELS_CACHE/text`` (default
``~/.cache/toymodels/text``), keyed by Python version and ``max_chars``. See
docs/text_corpus.md.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import io
import json
import os
import platform
import sysconfig
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.config import ConfigError, check_choice, check_int, fail
from toymodels.results import atomic_write_bytes, write_json
from toymodels.tasks.base import SPLITS, Batch, Task, Vocab, next_token_batch, register

FORMAT = 1  # bump when the build changes, so stale caches are not reused
SKIP_DIRS = frozenset({"site-packages", "test", "tests", "idlelib", "lib2to3"})
# Fixed, corpus-independent: printable ASCII (space = 0), newline, then one fallback.
TOKENS = tuple(chr(c) for c in range(32, 127)) + ("\n", "\ufffd")
NEWLINE, UNKNOWN = 95, 96


def encode(text: str) -> np.ndarray:
    code = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    ids = np.where(code == 10, NEWLINE, UNKNOWN)
    printable = (code >= 32) & (code <= 126)
    return np.where(printable, code - 32, ids).astype(np.uint8)


def decode(ids) -> str:
    return "".join(TOKENS[int(i)] for i in np.asarray(ids).reshape(-1))


def stdlib_docstrings(root: str | None = None) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """(relative path, [(qualified name, docstring), ...]) per parsable file, in build order."""
    root = root or sysconfig.get_paths()["stdlib"]
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        paths += [os.path.join(folder, f) for f in files if f.endswith(".py")]
    for rel in sorted(Path(p).relative_to(root).as_posix() for p in paths):
        try:
            with open(os.path.join(root, rel), "rb") as f, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escapes in old sources
                tree = ast.parse(f.read())
        except (OSError, SyntaxError, ValueError, RecursionError):
            continue
        yield rel, list(_node_docs(tree, ""))


def _node_docs(node: ast.AST, qualname: str) -> Iterator[tuple[str, str]]:
    doc = ast.get_docstring(node, clean=True)
    if doc and doc.strip():
        yield qualname or "<module>", doc.strip()
    for child in getattr(node, "body", []):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _node_docs(child, f"{qualname}.{child.name}" if qualname else child.name)


def is_eval_doc(rel: str, qualname: str) -> bool:
    return zlib.crc32(f"{rel}:{qualname}".encode()) % 10 == 0


def build_corpus(max_chars: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train uint8, eval uint8, info). Stops reading files once both splits are full,
    which gives the same arrays as building everything and truncating."""
    start = time.perf_counter()
    limits = {"train": max_chars, "eval": max_chars // 10}
    docs, chars = {"train": [], "eval": []}, {"train": 0, "eval": 0}
    n_files = 0
    for rel, file_docs in stdlib_docstrings():
        n_files += 1
        for qualname, doc in file_docs:
            split = "eval" if is_eval_doc(rel, qualname) else "train"
            if chars[split] < limits[split]:
                docs[split].append(doc)
                chars[split] += len(doc) + 2
        if all(chars[s] >= limits[s] for s in docs):
            break
    arrays = {s: encode("\n\n".join(docs[s]))[:limits[s]] for s in docs}
    info = {"format": FORMAT, "python": platform.python_version(), "max_chars": max_chars,
            "files": n_files, "documents": {s: len(docs[s]) for s in docs},
            "characters": {s: int(arrays[s].size) for s in docs},
            "sha256": {s: hashlib.sha256(arrays[s].tobytes()).hexdigest() for s in docs},
            "build_seconds": round(time.perf_counter() - start, 3)}
    return arrays["train"], arrays["eval"], info


def cache_dir() -> Path:
    return Path(os.environ.get("TOYMODELS_CACHE") or "~/.cache/toymodels").expanduser() / "text"


def load_corpus(max_chars: int = 2_000_000) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train, eval, info), from this process's memory, the disk cache, or a fresh build."""
    return _load(str(cache_dir()), max_chars)


def forget_loaded() -> None:
    """Drop the corpora loaded in this process: the next ``load_corpus`` reads the disk cache."""
    _load.cache_clear()


@functools.lru_cache(maxsize=8)
def _load(folder: str, max_chars: int) -> tuple[np.ndarray, np.ndarray, dict]:
    stem = f"stdlib-docs-v{FORMAT}-py{platform.python_version()}-{max_chars}"
    arrays_path, info_path = Path(folder) / f"{stem}.npz", Path(folder) / f"{stem}.json"
    try:
        info = json.loads(info_path.read_text())
        with np.load(arrays_path) as z:
            train, held = z["train"], z["eval"]
        if [hashlib.sha256(a.tobytes()).hexdigest() for a in (train, held)] != \
                [info["sha256"]["train"], info["sha256"]["eval"]]:
            raise ValueError("cached arrays do not match their recorded sha256")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # missing, partial or stale: rebuild
        train, held, info = build_corpus(max_chars)
        buf = io.BytesIO()
        np.savez(buf, train=train, eval=held)
        atomic_write_bytes(arrays_path, buf.getvalue())  # arrays first: info marks completion
        write_json(info_path, info)
    for a in (train, held):
        a.setflags(write=False)  # shared by every caller through the cache
    return train, held, info


def corpus_info(max_chars: int = 2_000_000) -> dict:
    return load_corpus(max_chars)[2]


def unigram_entropy(max_chars: int = 2_000_000) -> float:
    """Entropy (nats per character) of the train split's character frequencies: a no-context baseline."""
    counts = np.bincount(load_corpus(max_chars)[0], minlength=len(TOKENS))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@register
@dataclasses.dataclass(frozen=True)
class TextTask(Task):
    """Next-character prediction on random windows of the corpus; every position is scored."""

    name = "text"

    length: int = 128          # T
    max_chars: int = 2_000_000  # train characters; eval gets max_chars // 10

    def __post_init__(self):
        check_int("length", self.length, 1)
        check_int("max_chars", self.max_chars, 1)
        if self.max_chars // 10 < self.length + 1:
            fail("max_chars", self.max_chars, f"must be >= {10 * (self.length + 1)} so that the eval "
                 f"split (max_chars // 10) holds a window of length + 1 = {self.length + 1}")

    @property
    def seq_len(self) -> int:
        return self.length

    @property
    def vocab(self) -> Vocab:
        return Vocab(TOKENS)

    def corpus(self, split: str = "train") -> np.ndarray:
        check_choice("split", split, SPLITS)
        train, held, _ = load_corpus(self.max_chars)
        return train if split == "train" else held

    def corpus_info(self) -> dict:
        return corpus_info(self.max_chars)

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        chars = self.corpus(split)
        n_tokens = self.length + 1
        if chars.size < n_tokens:
            raise ConfigError(f"length={self.length} is not allowed: the {split} corpus has only "
                              f"{chars.size} characters")
        start_B = jax.random.randint(key, (batch_size,), 0, chars.size - n_tokens + 1)
        idx_BU = start_B[:, None] + jnp.arange(n_tokens)[None, :]
        return next_token_batch(jnp.asarray(chars)[idx_BU].astype(jnp.int32), n_answer=self.length)
