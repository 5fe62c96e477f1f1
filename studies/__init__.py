"""Study modules: presets, a resumable run, a summary, and figures drawn from the summary.

Every study module defines
  NAME, PRESETS                      named presets ("smoke" for CPU in minutes, "paper")
  specs(preset) -> list[RunSpec]     the grid
  run(preset, out, progress)         trains (resumable) into ``out``
  summarize(out, table_dir)          small summary tables (CSV) from the raw results
  figures(table_dir)                 PNG + PDF drawn from those tables only
and ends with ``if __name__ == "__main__": study_main(sys.modules[__name__])``.
"""

STUDIES = ("quickstart", "ood_decay", "myopia", "compiled_vs_trained")
