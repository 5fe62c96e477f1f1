"""Every study's smoke path end to end (its preset shrunk with dataclasses.replace), and the
shared entry point."""

import dataclasses
import importlib
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from studies import STUDIES
from studies.common import run_study
from studies.myopia.presets import Convergence, WuBand
from studies.ood_decay.presets import Persistence, Sharing
from toymodels import FAST_COMPILE_FLAGS
from toymodels.config import ConfigError
from toymodels.results import read_rows

SHRINK = {"quickstart": dict(steps=10, seeds=3),   # the shapes of the summary test below: one compile
          # case D alone exercises every table (zero-shot included); one size keeps compiles few
          "ood_decay": dict(cases=("D",), sizes=(("1L-d16", 1, 16),), steps=(20, 20, 20), seeds=2,
                            sharing=Sharing(arms=("interfere",), sharing=(1.0,), seeds=2, n_layers=1, d_model=16,
                                            n_languages=3, max_pre=50, window=30, n_evals=4, warmup=5,
                                            eval_batch=32, ladder=("unembed",), ladder_sharing=(1.0,),
                                            ladder_steps=5, early_window=5),
                            persistence=Persistence(sizes=(("1L-d16", 1, 16, 3e-3),), tune_lrs=(3e-3,), extra=(10,),
                                                    lr2=(1e-3,), sgd=(0.1,), replay=(0.05,), wd_data=(0.1,),
                                                    wd_only=(1.0,), seeds=2, max_pre=50, window=30, n_evals=4,
                                                    warmup=5, eval_batch=32)),
          # one size per family, one band, a two-point grid not widened (widening: tests/studies/test_myopia.py):
          # every table and figure
          "myopia": dict(steps=tuple((f, 8) for f in ("wu", "mult", "pairs", "text", "markov")), wu_ps=(1.0,),
                         betas=(), fillers=(0,), pair_sizes=((1, 16),), text_sizes=((1, 16),), lr_factors=(1.0, 3.0),
                         max_widen=0, bands=(("wu", (1,)),), eval_batch=16, n_evals=2,
                         convergence=Convergence(sizes=((1, 16),), steps=8, seeds=2, lr_factors=(("vanilla", 3.0),
                                                 ("myopic", 1.0)), check_factors=(1.0, 3.0), n_evals=2, eval_batch=16,
                                                 mult_steps=8, mult_seeds=2,
                                                 mult_lr_factors=(("vanilla", 1.0), ("myopic", 3.0))),
                         # part wu_band's runs are main runs here (same ids) but for the band at the rate
                         # vanilla did not choose; no long runs (three more compiles: their table and figure
                         # are tested in tests/studies/test_myopia.py)
                         wu_band=WuBand(bands=(1,), lr_factors=(1.0, 3.0), seeds=2)),
          # the base cell alone (count_fraction.csv then says the regression is not estimable), one removal arm
          "backdoors": dict(sizes=(("1L-d16", 1, 16),), insert_steps=(30,), poison_per_batch=(2,), densities=(1,),
                            triggers=("token",), clean_steps=30, clean_lrs=(3e-3,), checkpoints=(10,), n_evals=3,
                            eval_batch=32, noise_levels=(1.0,), relearn_steps=20, stage2_seeds=2, detect_seqs=32),
          # two model kinds (a variant pair, metatokens), their targets on the null, a few steps each
          "elicitation": dict(kinds=("backdoored", "meta"), d_model=8, train_steps=20, drop_steps=10,
                              finetune_steps=10, prefix=1, lengths=(0, 1),
                              prompt_steps=4, eval_batch=32, n_evals=2, prompt_history=2, scales=(0.3,), n_draws=2),
          # every table at toy sizes: one drift, two shared sizes, one joint layout and coeff beside 0; the
          # synthetic dictionaries have the model's shapes (16 features in 8 dims, k 2), so they reuse its compiles
          "dictionaries": dict(d_model=8, warmup=5, train_steps=30, ft_steps=10, n_evals=2, eval_batch=32,
                               d_sae=16, k=2, dict_steps=20, n_acts=512, multipliers=(1, 2), n_features=16, d_synth=8,
                               p_fire=0.08, drifts=(1.0,), top=3, n_layers=2, joint_layouts=("shared",))}


def shrunk(study, name: str) -> dict:
    return {"smoke": dataclasses.replace(study.PRESETS["smoke"], **SHRINK[name])}


# Studies whose own test module runs the same path (smoke preset shrunk, run, tables,
# figures, then a redraw from the tables alone) with more assertions: not run twice.
OWN_END_TO_END = {"compiled_vs_trained": "tests/studies/test_compiled_vs_trained.py::test_smoke_path_end_to_end"}


def test_every_study_has_a_smoke_path_here_or_in_its_own_module():
    assert set(SHRINK) | set(OWN_END_TO_END) == set(STUDIES)


@pytest.mark.parametrize("name", [s for s in STUDIES if s not in OWN_END_TO_END])
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


def _fake_study(seen: list):
    """A study that trains nothing: records what its output folder held when run started."""
    study = types.ModuleType("fake")
    study.NAME, study.PRESETS = "fake", {"smoke": None, "paper": None}
    study.run = lambda preset, out, progress=True: seen.append(sorted(p.name for p in out.iterdir()))
    study.summarize = lambda out, tables: None
    study.figures = lambda tables: []
    return study


def _results_folder(out):
    """What a study leaves in its output folder (and a kill's temporary)."""
    for rel in ("runs/seed0/metrics.csv", "runs/seed0/config.json", "runs/seed0/done.json",
                "groups/0123456789ab/members.json", "groups/0123456789ab/10/state/d/abc",
                "analyses/probes/k.csv", "analyses/probes/k.json", "repro.json", ".repro.json.abcd1234.tmp",
                "figures/curves.csv", "figures/curves.png", "figures/curves.pdf"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("x")


def test_no_resume_removes_the_studys_results_and_nothing_else(tmp_path, monkeypatch):
    seen = []
    out = tmp_path / "out"
    _results_folder(out)
    run_study(_fake_study(seen), "smoke", out, resume=False)
    assert seen == [[]] and out.is_dir()
    _results_folder(out)
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match=r"thesis.tex; refusing to clear it \(nothing was deleted\)"):
        run_study(_fake_study(seen), "smoke", out, resume=False)
    assert (out / "thesis.tex").read_text() == "years of work" and (out / "runs" / "seed0" / "done.json").exists()
    # the paper preset writes its tables under figures/<study>, so out/figures is not its own
    (out / "thesis.tex").unlink()
    with pytest.raises(ConfigError, match="figures; refusing"):
        run_study(_fake_study(seen), "paper", out, resume=False)
    # --out . in a working directory
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("mine")
    with pytest.raises(ConfigError, match="README.md"):
        run_study(_fake_study(seen), "smoke", Path("."), resume=False)
    assert (tmp_path / "README.md").exists() and seen == [[]]


def test_part_runs_the_reduced_preset_and_refuses_unknown_parts(tmp_path):
    got = []
    study = _fake_study([])
    study.PRESETS = {"smoke": ("a", "b")}
    study.run = lambda preset, out, progress=True: got.append(preset)
    with pytest.raises(ConfigError, match="part='c' is not allowed.*it has no parts"):
        run_study(study, "smoke", tmp_path, part="c")
    study.PARTS = ("a", "b")
    study.part = lambda preset, name: tuple(p for p in preset if p == name)
    with pytest.raises(ConfigError, match="part='c' is not allowed.*choose one of a, b"):
        run_study(study, "smoke", tmp_path, part="c")
    assert got == []
    run_study(study, "smoke", tmp_path, part="b")
    run_study(study, "smoke", tmp_path)
    assert got == [("b",), ("a", "b")]


_FAST = """
import json, os
import toymodels
from studies import common
calls = []
toymodels_fast = common.fast_compile
common.fast_compile = lambda: calls.append(1) or toymodels_fast()
common.run_study = lambda *a, **k: []
seen = []
for preset, opt_out in (("smoke", "0"), ("paper", "1"), ("smoke", "1")):
    os.environ["TOYMODELS_SMOKE_FAST_COMPILE"] = opt_out
    common.study_main(None, ["--preset", preset])
    seen.append([len(calls), os.environ.get("XLA_FLAGS", "")])
print(json.dumps(seen))
"""


def test_smoke_presets_compile_with_the_fast_flags_and_paper_presets_with_xla_defaults():
    """In one process (the flags are process-wide): smoke opted out, paper, then smoke."""
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TOYMODELS_SMOKE_FAST_COMPILE")}
    done = subprocess.run([sys.executable, "-c", _FAST], env=base, capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(n, FAST_COMPILE_FLAGS in flags) for n, flags in seen] == [(0, False), (0, False), (1, True)]


def test_fast_compile_says_when_it_is_too_late():
    code = ("import os, toymodels, jax.numpy as jnp; jnp.ones(2).block_until_ready(); "
            "assert not toymodels.fast_compile(); assert toymodels.FAST_COMPILE_FLAGS not in "
            "os.environ.get('XLA_FLAGS', ''); print('ok')")
    base = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
