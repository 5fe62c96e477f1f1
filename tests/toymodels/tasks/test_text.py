"""The stdlib-docstring text task: corpus built once into the cache, deterministic, disjoint splits."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

from toymodels.tasks import make_task, text


def sample(task, n, split="train", seed=0):
    return jax.jit(lambda k: task.sample(k, n, split))(jax.random.key(seed))


def full_seq(batch) -> np.ndarray:
    return np.concatenate([np.asarray(batch.inputs), np.asarray(batch.targets)[:, -1:]], axis=1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TOYMODELS_CACHE", str(tmp_path))
    return tmp_path / "text"


SMALL = 50_000


def test_text_builds_once_then_reads_the_cache(cache, monkeypatch):
    train, held, info = text.load_corpus(SMALL)
    files = sorted(cache.iterdir())
    assert [f.suffix for f in files] == [".json", ".npz"]
    assert json.loads(files[0].read_text()) == info == text.corpus_info(SMALL)
    assert info["characters"] == {"train": SMALL, "eval": SMALL // 10} == {"train": train.size, "eval": held.size}
    mtimes = [f.stat().st_mtime_ns for f in files]

    def no_rebuild(max_chars):
        raise AssertionError("the cached corpus was rebuilt")

    text.forget_loaded()
    monkeypatch.setattr(text, "build_corpus", no_rebuild)
    train2, held2, info2 = text.load_corpus(SMALL)
    np.testing.assert_array_equal(train, train2)
    np.testing.assert_array_equal(held, held2)
    assert info2 == info and [f.stat().st_mtime_ns for f in files] == mtimes
    h = text.unigram_entropy(SMALL)
    assert 2.0 < h < math.log(len(text.TOKENS))


def test_text_deterministic_across_cache_dirs(tmp_path, monkeypatch):
    built = []
    for sub in ("a", "b"):
        monkeypatch.setenv("TOYMODELS_CACHE", str(tmp_path / sub))
        built.append(text.load_corpus(SMALL))
    (t1, e1, i1), (t2, e2, i2) = built
    assert t1 is not t2  # really two builds, not the in-process cache
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(e1, e2)
    assert i1["sha256"] == i2["sha256"] and i1["documents"] == i2["documents"]


def test_text_splits_hold_disjoint_documents(cache):
    train, held, info = text.load_corpus(SMALL)
    assert train.size and held.size and max(train.max(), held.max()) < len(text.TOKENS)
    docs = {"train": [], "eval": []}
    for i, (rel, file_docs) in enumerate(text.stdlib_docstrings()):
        if i == info["files"]:
            break
        for qualname, doc in file_docs:
            docs["eval" if text.is_eval_doc(rel, qualname) else "train"].append(doc)
    for split, arr in (("train", train), ("eval", held)):
        np.testing.assert_array_equal(arr, text.encode("\n\n".join(docs[split]))[:arr.size])
    # Long eval documents that are not also (verbatim) train documents never occur in train.
    train_bytes, train_docs = train.tobytes(), set(docs["train"])
    checked = [d for d in docs["eval"] if len(d) >= 80 and d not in train_docs
               and held.tobytes().find(text.encode(d).tobytes()) >= 0]
    assert len(checked) >= 5
    assert all(train_bytes.find(text.encode(d).tobytes()) < 0 for d in checked)


def test_text_vocab_and_windows(cache):
    assert text.decode(text.encode("a\tb\n~é")) == "a\ufffdb\n~\ufffd"
    task = make_task("text", length=32, max_chars=SMALL)
    assert task.vocab.size == 97 and task.seq_len == 32
    for split in ("train", "eval"):
        corpus = task.corpus(split).tobytes()
        x = full_seq(sample(task, 32, split))
        assert all(corpus.find(row.astype(np.uint8).tobytes()) >= 0 for row in x)
