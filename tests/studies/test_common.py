"""Every study's smoke path end to end (its preset shrunk with dataclasses.replace), and the
shared entry point."""

import dataclasses
import importlib
import shutil

import pytest

from studies import STUDIES
from studies.common import run_study
from toymodels.config import ConfigError
from toymodels.results import read_rows

SHRINK = {"quickstart": dict(steps=20, seeds=2),
          # case D alone exercises every table (zero-shot included); one size keeps compiles few
          "ood_decay": dict(cases=("D",), sizes=(("1L-d16", 1, 16),), steps=(20, 20, 20), seeds=2),
          # one size, one point per sweep: every table and figure, 11 compiled programs
          "myopia": dict(steps=8, wu_ps=(1.0,), betas=(0.5,), fillers=(0,), sizes=((1, 16),),
                         pair_lengths=(6,), text_lengths=(16,), eval_batch=16),
          "compiled_vs_trained": dict(library=(), n_fountain=1, seeds=2, steps=30, max_inputs=64, mlp_steps=20,
                                      dec_programs=30, dec_eval=6, dec_weight_tokens=48, dec_program_tokens=40,
                                      dec_d_model=16, dec_layers=1, dec_steps=5, dec_seeds=2)}


def shrunk(study, name: str) -> dict:
    return {"smoke": dataclasses.replace(study.PRESETS["smoke"], **SHRINK[name])}


@pytest.mark.parametrize("name", STUDIES)
def test_study_runs_summarises_and_draws(name, tmp_path):
    study = importlib.import_module(f"studies.{name}")
    presets = shrunk(study, name)
    paths = run_study(study, "smoke", tmp_path / "out", progress=False, presets=presets)
    assert paths and all(p.stat().st_size > 5000 for p in paths)
    tables = list((tmp_path / "out" / "figures").glob("*.csv"))
    assert tables and all(read_rows(t) for t in tables)
    # figures are drawn from the tables alone: delete the raw results and redraw
    shutil.rmtree(tmp_path / "out" / "runs")
    assert run_study(study, "smoke", tmp_path / "out", figures_only=True, presets=presets) == paths


def test_unknown_preset_is_refused(tmp_path):
    study = importlib.import_module("studies.quickstart")
    with pytest.raises(ConfigError, match="choose one of smoke, paper"):
        run_study(study, "huge", tmp_path)


def test_quickstart_summary_has_seed_counts_bounded_intervals_and_points(tmp_path):
    study = importlib.import_module("studies.quickstart")
    presets = {"smoke": dataclasses.replace(study.PRESETS["smoke"], steps=10, seeds=3)}
    run_study(study, "smoke", tmp_path, progress=False, presets=presets)
    rows = read_rows(tmp_path / "figures" / "curves.csv")
    assert {r["n"] for r in rows} == {3}
    assert all(r["lo"] <= r["mean"] <= r["hi"] for r in rows)
    assert all(0 <= r["lo"] and r["hi"] <= 1 for r in rows if r["metric"] in ("acc", "exact"))
    assert all(r["lo"] >= 0 for r in rows if r["metric"] == "loss")
    assert all(len(str(r["values"]).split()) == 3 for r in rows)
