"""Studies: one package per study, each reading like the methods section of a paper.

``studies/<name>/`` holds
  presets.py     a frozen ``Preset`` dataclass and PRESETS ("smoke" for CPU in minutes, "paper")
  grid.py        the run specs of a preset
  measure.py     post-training analyses (cached with ``toymodels.analyses.AnalysisCache``)
  tables.py      ``summarize(out, table_dir)``: small summary tables from the raw results
  figures.py     ``figures(table_dir)``: one function per figure, drawn from those tables only
  __init__.py    NAME, PRESETS, ``run(preset, out, progress)``, summarize, figures
  __main__.py    ``python -m studies.<name> --preset smoke|paper`` (studies.common.study_main)
``quickstart`` is the template: the same parts, small enough for one file.
"""

STUDIES = ("quickstart", "ood_decay", "myopia", "compiled_vs_trained", "backdoors", "elicitation",
           "dictionaries")
