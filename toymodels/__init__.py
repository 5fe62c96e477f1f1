"""toymodels: small jit-compiled transformers on synthetic tasks, and tools to look inside them."""

from __future__ import annotations

import os

__version__ = "0.1.0"


def _one_cpu_device_per_core() -> None:
    """Give JAX one CPU device per core, so an ensemble's runs axis can be spread over the
    cores (``toymodels.runs.default_mesh``: each core trains its block of runs in turn).

    Runs at import, before JAX starts its backends. It leaves JAX's default (one CPU device)
    when XLA_FLAGS already sets a host device count, when TOYMODELS_CPU_DEVICES names a
    count (0 or 1: JAX's default), or when JAX has already started (importing toymodels after
    running JAX code)."""
    flags = os.environ.get("XLA_FLAGS", "")
    wanted = os.environ.get("TOYMODELS_CPU_DEVICES", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    if wanted and not wanted.isdigit():
        raise ValueError(f"TOYMODELS_CPU_DEVICES={wanted!r}: expected a positive number of devices")
    n = int(wanted) if wanted else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else (os.cpu_count() or 1)
    if n <= 1:
        return
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:   # JAX ran before toymodels was imported: its device count stands
        pass


_one_cpu_device_per_core()


# XLA:CPU without LLVM's optimisation passes and with its elemental loop-fusion emitters:
# programs compile in about half the time and run somewhat slower (measurements in
# tests/conftest.py, which uses them for the test suite). For runs that compile far more
# than they compute (smoke presets); results differ from the default flags' in the last bits.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def fast_compile() -> bool:
    """Add FAST_COMPILE_FLAGS to XLA_FLAGS. They only act if JAX has not started its backends
    yet: returns whether they will (False too when XLA_FLAGS already has them)."""
    import jax._src.xla_bridge as xla_bridge

    flags = os.environ.get("XLA_FLAGS", "")
    if FAST_COMPILE_FLAGS in flags or xla_bridge.backends_are_initialized():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {FAST_COMPILE_FLAGS}".strip()
    return True


def enable_compilation_cache(path: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache (default ``~/.cache/toymodels/jax``)."""
    import jax

    path = path or os.environ.get("TOYMODELS_JAX_CACHE") or os.path.expanduser("~/.cache/toymodels/jax")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
