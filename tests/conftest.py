import os
import sys
import tempfile

# Tests live in folders that mirror the tree (tests/toymodels/..., tests/studies/...); shared
# case modules (rasp_cases.py) sit at tests/ and are importable from every folder.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Each xdist worker is its own process: none may grab most of an accelerator's memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# One CPU device per xdist worker (the workers already share the cores; a device per core
# would compile every ensemble program once per device). The per-device layout is tested
# with 4 host devices in tests/multidevice.
os.environ.setdefault("TOYMODELS_CPU_DEVICES", "1")

# Most of the suite's time is XLA compiling the same small programs in several processes (the
# xdist workers, and the subprocesses of the kill/resume, multi-process and multi-device tests):
# one persistent compilation cache for all of them, keyed by the program and the JAX version,
# so an executable is compiled once per machine. TOYMODELS_TEST_JAX_CACHE="" turns it off.
# No size limit inside JAX: its LRU eviction takes one file lock around every read and write and
# re-stats the whole folder on every write, which serialised the workers (py-spy: most samples
# waiting on that lock; the suite ran 2.7x longer). The folder is bounded once per session
# instead, by the controller before any worker starts (pytest_configure below). A write another
# process reads half-done only costs that reader a recompile (JAX warns and compiles).
_CACHE = os.environ.get("TOYMODELS_TEST_JAX_CACHE", os.path.join(tempfile.gettempdir(), "toymodels-test-jax-cache"))
_CACHE_MAX_BYTES = 2 * 1024 ** 3
if _CACHE:
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", "-1")

# Figures as PNG only: half of a study smoke path's drawing time is its PDFs (the myopia
# figures: 9.7 s with, 4.6 s without). tests/toymodels/test_plotting.py writes PDFs on purpose.
os.environ.setdefault("TOYMODELS_FIGURE_PDF", "0")

# The suite's time is XLA compiling hundreds of small programs that then run for a few steps.
# Compiling without LLVM's optimisation passes halves a cold test_fit.py (23.6 -> 12.2 s) and
# cuts a study's smoke path by 28 % (backdoors 72 -> 52 s), one process alone on 2 cores; XLA's
# older elemental emitters for loop fusions instead of its MLIR fusion emitters take another
# ~30 % off (test_fit 26 -> 18 s, backdoors 100 -> 69 s, both under the same foreign load).
# Tests compare programs compiled under the same flags, so no assertion depends on them;
# benchmarks and paper presets run with XLA's defaults (smoke presets use them too:
# toymodels.fast_compile). TOYMODELS_TEST_XLA_FLAGS="" turns them off.
from toymodels import FAST_COMPILE_FLAGS  # noqa: E402  (starts no backend: the flags below still act)

_FLAGS = os.environ.get("TOYMODELS_TEST_XLA_FLAGS", FAST_COMPILE_FLAGS)
if _FLAGS and _FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAGS}".strip()

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

# Shape bugs fail loudly instead of broadcasting silently (nanodo habit).
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_configure(config):
    """The controller (not an xdist worker) empties the compile cache once it outgrows its bound."""
    cache = Path(_CACHE) if _CACHE else None
    if hasattr(config, "workerinput") or cache is None or not cache.is_dir():
        return
    if sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) > _CACHE_MAX_BYTES:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture
def tiny_cfg():
    from toymodels.model import TransformerConfig
    return TransformerConfig(n_layers=2, d_model=32, n_heads=4, vocab_size=16, max_seq_len=12)

# Multi-device tests need XLA_FLAGS set before JAX starts, so they run in their own
# process (tests/test_sharding.py launches it) and are skipped in this one.
collect_ignore = [] if os.environ.get("TOYMODELS_MULTIDEVICE") else ["multidevice"]
