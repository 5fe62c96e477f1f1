import dataclasses
import re
import subprocess
import sys
import typing

import pytest
from extras import require

from toymodels.cli import (StudyArgs, TrainArgs, build_mixture, build_tasks, init_distributed, parse_train_args,
                           study_args, train_main, train_specs)
from toymodels.config import ConfigError
from toymodels.model import TransformerConfig


def _help(capsys, monkeypatch, parse) -> str:
    """The --help text as one line, box-drawing stripped."""
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        parse(["--help"])
    text = capsys.readouterr().out
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _flag_help(text: str, flag: str) -> str:
    """What --help says right after ``flag``, up to the next flag."""
    start = text.index(flag + " ") + len(flag)
    end = text.find(" --", start)
    return text[start:end]


def test_every_flag_shows_its_own_help(capsys, monkeypatch):
    text = _help(capsys, monkeypatch, parse_train_args)
    assert "one run per seed" in _flag_help(text, "--seeds")
    assert "mixture events" not in _flag_help(text, "--seeds")
    assert "results folder" in _flag_help(text, "--out")
    assert "vocab_size" not in _flag_help(text, "--out")
    assert "LayerNorm epsilon" in _flag_help(text, "--model.ln_eps")
    assert "gradient link" in _flag_help(text, "--model.myopic_beta")
    assert "mixture events" in _flag_help(text, "--events")


def test_help_lists_the_choices_of_choice_fields(capsys, monkeypatch):
    text = _help(capsys, monkeypatch, parse_train_args)
    for flag, choices in [("--model.norm", "{layernorm,none}"), ("--model.act", "{gelu,relu}"),
                          ("--model.input_kind", "{tokens,vectors}"), ("--model.output_kind", "{logits,vectors}"),
                          ("--train.lr_schedule", "{constant,cosine}"), ("--train.eval_spacing", "{linear,log}"),
                          ("--train.context", "{live,teacher,none}")]:
        assert f"{flag} {choices}" in text, flag
    assert "--preset {smoke,paper}" in _help(capsys, monkeypatch, study_args)


def test_choice_fields_are_literals_and_still_checked_in_code():
    hints = typing.get_type_hints(TransformerConfig)
    assert typing.get_args(hints["norm"]) == ("layernorm", "none")
    assert typing.get_args(hints["output_kind"]) == ("logits", "vectors")
    assert typing.get_args(typing.get_type_hints(StudyArgs, include_extras=False)["preset"]) == ("smoke", "paper")
    with pytest.raises(ConfigError, match="act='swish' is not allowed: choose one of 'gelu', 'relu'"):
        TransformerConfig(act="swish")


def test_flags_reach_the_configs_and_bad_choices_are_rejected(capsys):
    args = parse_train_args(["--model.norm", "none", "--train.context", "none", "--seeds", "3", "4",
                             "--train.steps", "7"])
    assert (args.model.norm, args.train.context, args.seeds, args.train.steps) == ("none", "none", (3, 4), 7)
    with pytest.raises(SystemExit):
        parse_train_args(["--model.norm", "rmsnorm"])
    assert study_args(["--preset", "paper"]).preset == "paper"
    with pytest.raises(SystemExit):
        study_args(["--preset", "huge"])


def test_train_specs_one_per_seed_with_the_model_fitted_to_the_tasks():
    args = parse_train_args(["--tasks", "markov", "sort", "--task_set", "sort.length=5", "markov.vocab_size=12",
                             "--events", "drop:sort:50", "--seeds", "0", "2"])
    specs = train_specs(args)
    assert [s.run_id for s in specs] == ["seed0", "seed2"] and [s.train.seed for s in specs] == [0, 2]
    tasks = dict(specs[0].tasks)
    assert tasks["sort"].length == 5 and tasks["markov"].vocab_size == 12
    assert specs[0].model.max_seq_len == max(t.seq_len for t in tasks.values())
    assert specs[0].mixture.events[0].step == 50
    kept = train_specs(dataclasses.replace(args, fit_model_to_tasks=False))
    assert kept[0].model == args.model


@pytest.mark.parametrize("call, match", [
    (lambda: build_tasks(["markov"], ["markov.vocab_size"]), "is not TASK.FIELD=VALUE"),
    (lambda: build_tasks(["markov"], ["sort.length=3"]), "not in --tasks"),
    (lambda: build_tasks(["markov"], ["markov.size=3"]), "has no field 'size'; valid fields"),
    (lambda: build_tasks(["markov"], ["markov.vocab_size=x"]), "not a valid int"),
    (lambda: build_tasks(["nope"], ["nope.a=1"]), "unknown task 'nope'"),
    (lambda: build_mixture(["a"], ["drop:a"]), "is not KIND:TASK:STEP"),
    (lambda: build_mixture(["a"], ["drop:a:x"]), "STEP must be an integer"),
    (lambda: build_mixture(["a"], ["remove:a:10"]), r"'remove:a:10': event.kind='remove' is not allowed: choose"),
    (lambda: build_mixture(["a"], ["drop:a:-5"]), r"'drop:a:-5': event.step=-5 is not allowed: must be an integer"),
    (lambda: build_mixture(["a"], ["replay:a:5:1.5"]), r"event.fraction=1.5 is not allowed: must be in"),
])
def test_bad_task_and_event_flags_name_the_problem(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_build_mixture_reads_fractions_and_distributed_is_off_by_default():
    mix = build_mixture(["a", "b"], ["replay:b:10:0.25"])
    assert mix.tasks == ("a", "b") and (mix.events[0].kind, mix.events[0].fraction) == ("replay", 0.25)
    init_distributed(False)   # does nothing without the flag
    assert TrainArgs().distributed is False


def test_the_training_command_is_python_m_toymodels():
    proc = subprocess.run([sys.executable, "-m", "toymodels", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "python -m toymodels" in proc.stdout


@pytest.mark.parametrize("argv, match", [
    (["--train.lr", "inf"], r"lr=inf is not allowed: must be a finite number in \(0.0, inf\)"),
    (["--train.eps", "-1"], r"eps=-1.0 is not allowed"),
    (["--model.init_std", "nan"], r"init_std=nan is not allowed"),
    (["--seeds"], r"--seeds was given no seeds: give at least one"),
    (["--seeds", "99999999999"], r"--seeds=99999999999 .*int32 PRNG seed range"),
    (["--seeds", "1", "2", "--train.seed", "5"], r"give either --seeds or --train.seed, not both"),
    (["--model.myopic", "--train.myopic"], r"--model.myopic .* use --train.myopic"),
    (["--checkpoint_every_s", "nan"], r"checkpoint_every_s=nan"),
])
def test_bad_flag_values_print_one_error_line_and_exit_2(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        train_main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert re.search(match, err), err


def test_config_errors_after_parsing_print_one_line_too(tmp_path):
    with pytest.raises(SystemExit) as e:
        train_main(["--events", "drop:markov:99999", "--train.steps", "1000", "--out", str(tmp_path / "o"),
                    "--no_progress"])
    assert re.fullmatch(r"error: event drop:markov step=99999 is not allowed: must be <= steps=1000 .*",
                        str(e.value.code))
    with pytest.raises(SystemExit) as e:
        train_main(["--events", "remove:markov:10"])
    assert str(e.value.code).startswith("error: --events 'remove:markov:10': event.kind='remove'")


def test_seeds_default_to_train_seed():
    assert [s.run_id for s in train_specs(parse_train_args(["--train.seed", "4"]))] == ["seed4"]
    assert [s.train.seed for s in train_specs(parse_train_args(["--seeds", "1", "2"]))] == [1, 2]


TINY = ["--tasks", "markov", "--task_set", "markov.vocab_size=8", "markov.length=8", "--model.n_layers", "1",
        "--model.d_model", "16", "--model.n_heads", "2", "--train.steps", "20", "--train.chunk_steps", "10",
        "--train.n_evals", "2", "--train.batch_size", "4", "--no_progress"]


def test_tensorboard_flag_writes_every_runs_scalars(tmp_path):
    require("tensorboardX")
    train_main([*TINY, "--seeds", "0", "1", "--out", str(tmp_path / "o"), "--tensorboard", str(tmp_path / "tb")])
    (events,) = (tmp_path / "tb").glob("events.out.tfevents.*")   # one file, closed by the command
    data = events.read_bytes()
    for tag in ("seed0/train_loss", "seed1/train_loss", "seed0/markov/loss", "seed1/markov/acc"):
        assert tag.encode() in data, tag
    assert study_args(["--tensorboard", "tb"]).tensorboard == "tb" and StudyArgs().tensorboard == ""


def test_tensorboard_flag_without_the_extra_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)   # as if not installed
    with pytest.raises(SystemExit) as e:
        train_main([*TINY, "--out", str(tmp_path / "o"), "--tensorboard", str(tmp_path / "tb")])
    assert re.fullmatch(r"error: --tensorboard: TensorBoardLogger needs tensorboardX: pip install "
                        r"'toymodels\[tensorboard\]' .*", str(e.value.code))
    assert not (tmp_path / "o").exists()   # refused before anything trained
