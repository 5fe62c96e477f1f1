"""toymodels: small jit-compiled transformers on synthetic tasks, and tools to look inside them."""

from __future__ import annotations

import os

__version__ = "0.1.0"


def enable_compilation_cache(path: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache (default ``~/.cache/toymodels/jax``)."""
    import jax

    path = path or os.environ.get("TOYMODELS_JAX_CACHE") or os.path.expanduser("~/.cache/toymodels/jax")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
