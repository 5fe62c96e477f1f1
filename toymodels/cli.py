"""Command lines: ``python -m toymodels`` (train) and the shared flags of every study.

Config dataclasses become flags through tyro (``--model.d_model 64``,
``--train.lr 3e-3``); unknown flags and wrong types are rejected with the list
of valid ones. Rerunning the same command resumes from the newest checkpoint.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Annotated, Literal

import jax
import tyro

from toymodels import enable_compilation_cache
from toymodels.callbacks import TensorBoardLogger
from toymodels.config import ConfigError, check_range, check_seed
from toymodels.model import TransformerConfig
from toymodels.runspec import RunSpec
from toymodels.schedule import Event, Mixture
from toymodels.store import load_rows
from toymodels.sweep import run_sweep
from toymodels.tasks import TASKS, make_task
from toymodels.trainconfig import TrainConfig

try:   # tyro's (private, versioned) parse-error hook: config errors as one line, not a box
    from tyro import _errors as tyro_errors
except ImportError:   # pragma: no cover - older tyro: its own error box is shown instead
    tyro_errors = None


@dataclasses.dataclass(frozen=True)
class TrainArgs:
    """Train registered task(s) with any model; results and checkpoints go to --out."""
    model: TransformerConfig = TransformerConfig(n_layers=2, d_model=64, n_heads=4)
    train: TrainConfig = TrainConfig(steps=1000)
    tasks: tuple[str, ...] = ("markov",)   # registered task names, trained as one mixture
    task_set: tuple[str, ...] = ()
    """task fields as TASK.FIELD=VALUE, e.g. --task_set sort.length=6 markov.vocab_size=16"""
    events: tuple[str, ...] = ()
    """mixture events as KIND:TASK:STEP[:FRACTION], e.g. --events drop:sort:500 replay:sort:800:0.05"""
    seeds: tuple[int, ...] | None = None
    """one run per seed, all trained as one program (default: the one run of --train.seed;
    giving both is refused)"""
    fit_model_to_tasks: bool = True
    """set model.vocab_size / max_seq_len to what the tasks need (overrides those two fields)"""
    out: str = "results/train"   # results folder: runs/<seed id>/metrics.csv, checkpoints in groups/
    checkpoint_every_s: float = 60.0   # 0 = at every chunk boundary
    progress: bool = True   # progress line on stderr
    distributed: bool = False   # call jax.distributed.initialize() first (one process per host)
    tensorboard: str = ""
    """write TensorBoard scalars to this folder: <run>/train_loss, <run>/<task>/<metric> (needs the
    tensorboard extra)"""

    def __post_init__(self):
        check_range("checkpoint_every_s", self.checkpoint_every_s, 0.0, float("inf"))
        if not self.tasks:
            raise ConfigError("--tasks is empty: name at least one registered task")
        if self.seeds is not None:
            if not self.seeds:
                raise ConfigError("--seeds was given no seeds: give at least one, or leave it out to "
                                  "train the one run of --train.seed")
            for s in self.seeds:
                check_seed("--seeds", s)
            if self.train.seed != TrainConfig.seed:
                raise ConfigError(f"give either --seeds or --train.seed, not both (--seeds {list(self.seeds)} "
                                  f"would replace --train.seed {self.train.seed})")
        if self.model.myopic or self.model.myopic_beta:
            raise ConfigError("--model.myopic / --model.myopic_beta are not used in training (one program "
                              "serves myopic and vanilla runs): use --train.myopic / --train.myopic_beta")


def _cli(cls, argv, **kwargs):
    """``tyro.cli``; a config value that fails its check prints ``error: <message>`` and exits 2."""
    def hook(event):
        if isinstance(event, tyro_errors.InstantiationFailure):
            print(f"error: {event.message}", file=sys.stderr)
            sys.exit(2)
    if tyro_errors is None:
        return tyro.cli(cls, args=argv, use_underscores=True, **kwargs)
    with tyro_errors.on_parse_error(hook):
        return tyro.cli(cls, args=argv, use_underscores=True, **kwargs)


def _coerce(cls, field: str, raw: str):
    """A task field's value parsed from its command-line text, by the field's type."""
    hints = typing.get_type_hints(cls)
    if field not in hints:
        valid = ", ".join(sorted(f.name for f in dataclasses.fields(cls)))
        raise ConfigError(f"task {cls.name!r} has no field {field!r}; valid fields: {valid}")
    typ = hints[field]
    if typing.get_origin(typ) is Literal:
        return raw   # the task's own check names the allowed values
    if typ is bool:
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"{cls.name}.{field}={raw!r} is not a bool (true/false)")
        return raw.lower() in ("true", "1")
    try:
        return typ(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{cls.name}.{field}={raw!r} is not a valid {getattr(typ, '__name__', typ)}") from None


def build_tasks(names, task_set) -> dict:
    """Tasks by name, with ``TASK.FIELD=VALUE`` overrides applied."""
    fields: dict[str, dict] = {n: {} for n in names}
    for item in task_set:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--task_set {item!r} is not TASK.FIELD=VALUE")
        lhs, raw = item.split("=", 1)
        name, field = lhs.split(".", 1)
        if name not in fields:
            raise ConfigError(f"--task_set {item!r} names task {name!r}, which is not in --tasks {names}")
        if name not in TASKS:
            raise ConfigError(f"unknown task {name!r}; registered tasks: {', '.join(sorted(TASKS))}")
        fields[name][field] = _coerce(TASKS[name], field, raw)
    return {n: make_task(n, **fields[n]) for n in names}


def build_mixture(names, events) -> Mixture:
    """The mixture of ``names`` with ``KIND:TASK:STEP[:FRACTION]`` events."""
    evs = []
    for item in events:
        parts = item.split(":")
        if len(parts) not in (3, 4):
            raise ConfigError(f"--events {item!r} is not KIND:TASK:STEP[:FRACTION]")
        try:
            step, fraction = int(parts[2]), float(parts[3]) if len(parts) == 4 else 0.0
        except ValueError:
            raise ConfigError(f"--events {item!r}: STEP must be an integer and FRACTION a number") from None
        try:   # the Event's own message names what is wrong (kind, step, fraction)
            evs.append(Event(parts[0], parts[1], step, fraction))
        except ConfigError as e:
            raise ConfigError(f"--events {item!r}: {e}") from None
    return Mixture(tuple(names), events=tuple(evs))


def parse_train_args(argv=None) -> TrainArgs:
    """The training command's flags (``sys.argv`` when ``argv`` is None)."""
    return _cli(TrainArgs, argv, prog="python -m toymodels")


def train_specs(args: TrainArgs) -> list[RunSpec]:
    """The RunSpecs (one per seed) a TrainArgs command line trains."""
    tasks = build_tasks(args.tasks, args.task_set)
    mixture = build_mixture(args.tasks, args.events)
    model = args.model
    if args.fit_model_to_tasks:
        model = dataclasses.replace(model, vocab_size=max(t.vocab.size for t in tasks.values()),
                                    max_seq_len=max(t.seq_len for t in tasks.values()))
    seeds = args.seeds if args.seeds is not None else (args.train.seed,)
    return [RunSpec(f"seed{s}", model, dataclasses.replace(args.train, seed=s), tuple(tasks.items()), mixture)
            for s in seeds]


def init_distributed(enabled: bool) -> None:
    """Join a multi-host job; JAX finds the coordinator on SLURM, Open MPI and TPU pods."""
    if enabled:
        jax.distributed.initialize()


def logging_callbacks(tensorboard: str = "") -> list[TensorBoardLogger]:
    """The callbacks the logging flags ask for (``--tensorboard DIR``); close them when done. A
    missing extra is a ConfigError naming it (one error line on the command line)."""
    try:
        return [TensorBoardLogger(tensorboard)] if tensorboard else []
    except ImportError as e:
        raise ConfigError(f"--tensorboard: {e}") from None


def train_main(argv=None) -> None:
    """``python -m toymodels``: train, write results to --out, print the final eval metrics."""
    args = parse_train_args(argv)
    init_distributed(args.distributed)
    enable_compilation_cache()
    try:
        specs = train_specs(args)
        callbacks = logging_callbacks(args.tensorboard)
        try:
            run_sweep(specs, args.out, progress=args.progress, checkpoint_every_s=args.checkpoint_every_s,
                      callbacks=callbacks)
        finally:
            for callback in callbacks:
                callback.close()
    except ConfigError as e:
        sys.exit(f"error: {e}")
    rows = load_rows(args.out, [s.run_id for s in specs])
    final = max(r["step"] for r in rows)
    for r in rows:
        if r["step"] == final and r["task"] != "train":
            print(f"{r['run']:>8s}  {r['task']:>12s}  {r['metric']:>6s} {r['value']:.4f}")
    print(f"results in {args.out}/runs/*/metrics.csv", file=sys.stderr)


@dataclasses.dataclass(frozen=True)
class StudyArgs:
    """Uniform flags of every study module (python -m studies.<name>)."""
    preset: Annotated[Literal["smoke", "paper"], tyro.conf.arg(help="smoke (CPU, minutes) or paper")] = "smoke"
    out: str = ""          # default: results/<study>/<preset>
    part: str = ""
    """run one part of the preset (a study that has parts lists them in its PARTS); "" = all"""
    resume: bool = True    # reuse complete runs and checkpoints in --out
    figures_only: bool = False   # redraw figures from saved results; train nothing
    progress: bool = True  # progress line on stderr
    distributed: bool = False   # call jax.distributed.initialize() first (one process per host)
    tensorboard: str = ""
    """write TensorBoard scalars of every run trained to this folder (needs the tensorboard extra)"""


def study_args(argv=None) -> StudyArgs:
    """A study command's flags (``sys.argv`` when ``argv`` is None)."""
    return _cli(StudyArgs, argv)
