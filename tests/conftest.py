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
_CACHE = os.environ.get("TOYMODELS_TEST_JAX_CACHE", os.path.join(tempfile.gettempdir(), "toymodels-test-jax-cache"))
if _CACHE:
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 * 1024 ** 3))

import jax  # noqa: E402
import pytest

# Shape bugs fail loudly instead of broadcasting silently (nanodo habit).
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def tiny_cfg():
    from toymodels.model import TransformerConfig
    return TransformerConfig(n_layers=2, d_model=32, n_heads=4, vocab_size=16, max_seq_len=12)

# Multi-device tests need XLA_FLAGS set before JAX starts, so they run in their own
# process (tests/test_sharding.py launches it) and are skipped in this one.
collect_ignore = [] if os.environ.get("TOYMODELS_MULTIDEVICE") else ["multidevice"]
