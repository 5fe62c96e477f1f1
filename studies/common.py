"""The uniform entry point of every study: ``python -m studies.<name> --preset smoke|paper``.

A study is a package ``studies/<name>/`` whose ``__init__`` exposes NAME, PRESETS (name ->
a frozen Preset dataclass), ``run(preset, out, progress)``, ``summarize(out, table_dir)``
and ``figures(table_dir)``; its ``__main__`` calls ``study_main``. A study whose preset runs
independent experiments may list them in PARTS and give ``part(preset, name)``, the preset
reduced to one of them (``--part``): it trains exactly the runs the full preset has for that
part, into the same folder, so a later full run reuses them.

``--preset smoke`` compiles with ``toymodels.FAST_COMPILE_FLAGS`` (a smoke run mostly
compiles); TOYMODELS_SMOKE_FAST_COMPILE=0 keeps XLA's defaults.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

from toymodels import enable_compilation_cache, fast_compile, plotting
from toymodels.callbacks import Callback, sweep_callbacks
from toymodels.cli import init_distributed, logging_callbacks, study_args
from toymodels.config import ConfigError
from toymodels.store import remove_results


def reduce_to_part(P, name: str, parts: dict[str, dict]):
    """A study's ``part``: the preset ``P`` with the fields ``parts[name]`` sets (the other
    parts switched off)."""
    if name not in parts:
        raise ValueError(f"part={name!r}: choose one of {', '.join(parts)}")
    return dataclasses.replace(P, **parts[name])


def default_out(study: ModuleType, preset: str) -> Path:
    return Path("results") / study.NAME / preset


def table_dir(study: ModuleType, preset: str, out: Path) -> Path:
    """Paper figures and their tables are committed under figures/; others stay with the results."""
    return Path("figures") / study.NAME if preset == "paper" else out / "figures"


def run_study(study: ModuleType, preset: str, out: Path | None = None, *, resume: bool = True,
              progress: bool = True, figures_only: bool = False, presets: dict | None = None,
              callbacks: Sequence[Callback] = (), part: str = "") -> list[Path]:
    """Run (resumably), summarise and draw one study; ``presets`` overrides ``study.PRESETS``
    (tests pass a shrunk copy made with ``dataclasses.replace``). ``callbacks`` reach every
    ``run_sweep`` the study makes (``toymodels.callbacks.sweep_callbacks``).

    ``resume=False`` first deletes the study's own results in ``out`` (runs/, groups/,
    analyses/, repro.json and the smoke preset's figures/), and nothing else: a folder
    holding anything else is refused, naming it, before anything is deleted."""
    presets = study.PRESETS if presets is None else presets
    if preset not in presets:
        raise ConfigError(f"preset={preset!r} is not allowed for study {study.NAME!r}: "
                          f"choose one of {', '.join(presets)}")
    parts = getattr(study, "PARTS", ())
    if part and part not in parts:
        raise ConfigError(f"part={part!r} is not allowed for study {study.NAME!r}: "
                          + (f"choose one of {', '.join(parts)}" if parts else "it has no parts"))
    P = study.part(presets[preset], part) if part else presets[preset]
    out = Path(out) if out else default_out(study, preset)
    tables = table_dir(study, preset, out)
    if not figures_only:
        if not resume:
            remove_results(out, tables if tables.parent == out else None)
        with sweep_callbacks(callbacks):
            study.run(P, out, progress=progress)
        study.summarize(out, tables)
    return study.figures(tables)


def compile_for(preset: str) -> None:
    """Before anything runs: the smoke preset compiles with ``toymodels.FAST_COMPILE_FLAGS`` (a
    smoke run mostly compiles; its results differ in the last bits), unless
    TOYMODELS_SMOKE_FAST_COMPILE=0; other presets keep XLA's defaults."""
    if preset == "smoke" and os.environ.get("TOYMODELS_SMOKE_FAST_COMPILE", "1") != "0":
        fast_compile()


def study_main(study: ModuleType, argv=None) -> None:
    args = study_args(argv)
    compile_for(args.preset)
    init_distributed(args.distributed)
    enable_compilation_cache()
    plotting.use_file_backend()
    callbacks: list = []   # logging_callbacks: closed at the end
    try:
        callbacks = logging_callbacks(args.tensorboard)
        paths = run_study(study, args.preset, Path(args.out) if args.out else None, resume=args.resume,
                          progress=args.progress, figures_only=args.figures_only, callbacks=callbacks,
                          part=args.part)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    finally:
        for callback in callbacks:
            callback.close()
    print("figures: " + ", ".join(str(p) for p in paths))
