"""Regenerate figures: ``python -m figures [--preset paper|smoke] [--study NAME ...]``.

paper (default): redraw every committed figure under figures/<study>/ from the
committed summary tables there; no training, no raw results needed.
smoke: for every study, train its smoke preset where results are missing
(resuming partial ones), summarise, and draw into results/<study>/smoke/figures/.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from studies import STUDIES
from studies.common import compile_for, run_study
from toymodels import enable_compilation_cache, plotting


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=("paper", "smoke"), default="paper")
    p.add_argument("--study", action="append", choices=STUDIES, help="default: every study")
    a = p.parse_args(argv)
    compile_for(a.preset)
    enable_compilation_cache()
    plotting.use_file_backend()
    for name in a.study or STUDIES:
        study = importlib.import_module(f"studies.{name}")
        if a.preset == "paper":
            tables = Path("figures") / name
            if not tables.exists():
                print(f"{name}: no committed tables in {tables}; run python -m studies.{name} --preset paper",
                      file=sys.stderr)
                continue
            paths = study.figures(tables)
        else:
            paths = run_study(study, "smoke")
        print(f"{name}: " + ", ".join(str(x) for x in paths))


if __name__ == "__main__":
    main()
