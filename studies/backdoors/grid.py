"""The cells of a preset and the run graph of each.

A cell is one insertion setting: (trigger, behaviour, insertion steps S, poisoned samples per
batch k, response density, model size). Count = S * k poisoned samples seen, fraction = k / batch.
Per cell and seed (``{cell}_s{seed}_{role}``):
  insert          from a random init: the poisoned mix (k of every batch poisoned) for S steps
  clean           from insert: clean data only for clean_steps (the persistence curve); its data
                  stream continues where insertion stopped (no replayed batches)
  clean_lr{lr}    the same at another clean-phase learning rate (base cell only)
  clean_c{c}      the same, stopped at step c (a constant lr after the same warmup makes it
                  clean's exact prefix):
                  the models detection reads along the curve (detection cells only)
  rm_a{a}         removal by distillation on clean data from insert as the teacher, the student
                  started at (1 - a) insert + a fresh init (a = 0: self-distillation of a copy;
                  a = 1: a fresh student) (base cell only); fine-tuning is ``clean``
  ra_{role}       the relearning attack: the poisoned mix again, from ``role``'s final model,
                  until ASR >= RELEARN_ASR or relearn_steps (base cell only)
Never-poisoned controls (``never-{trigger}-{size}_s{seed}_{role}``), trained on the same clean
data (clean data excludes each trigger, so it depends on the trigger): insert, clean, clean_c{c}
and ra_clean (how fast a backdoor goes into a model that never had one).
"""

from __future__ import annotations

import dataclasses

from studies.backdoors.presets import CHUNK, RELEARN_ASR, STOP_EVERY, STUDENT_SEED, Preset, Size
from toymodels.model import TransformerConfig
from toymodels.params import n_params
from toymodels.runspec import RunSpec
from toymodels.schedule import Mixture
from toymodels.tasks import make_task
from toymodels.trainconfig import TrainConfig

AXES = ("base", "count_fraction", "density", "trigger", "behaviour", "size")


@dataclasses.dataclass(frozen=True)
class Cell:
    trigger: str
    behaviour: str
    insert_steps: int
    per_batch: int
    density: int
    size: Size

    @property
    def label(self) -> str:
        return (f"{self.trigger}-{self.behaviour}-S{self.insert_steps}-k{self.per_batch}"
                f"-d{self.density}-{self.size[0]}")


def base_cell(P: Preset) -> Cell:
    return Cell(P.triggers[0], P.behaviours[0], P.insert_steps[0], P.poison_per_batch[0], P.densities[0],
                P.sizes[0])


def cells(P: Preset) -> list[tuple[Cell, str]]:
    """Stage-1 cells and their axis: the base, the full count x fraction grid, then one axis at a time."""
    base = base_cell(P)
    out = [(base, "base")]
    out += [(dataclasses.replace(base, insert_steps=s, per_batch=k), "count_fraction")
            for s in P.insert_steps for k in P.poison_per_batch if (s, k) != (base.insert_steps, base.per_batch)]
    out += [(dataclasses.replace(base, density=d), "density") for d in P.densities[1:]]
    out += [(dataclasses.replace(base, trigger=t), "trigger") for t in P.triggers[1:]]
    out += [(dataclasses.replace(base, behaviour=b), "behaviour") for b in P.behaviours[1:]]
    out += [(dataclasses.replace(base, size=s), "size") for s in P.sizes[1:]]
    return out


def detection_cells(P: Preset) -> list[Cell]:
    """Cells whose models detection reads along the persistence curve: every trigger at the base."""
    return [c for c, axis in cells(P) if axis in ("base", "trigger")]


def task(P: Preset, trigger: str, behaviour: str = "fixed", per_batch: int = 0, density: int = 1):
    """The backdoor task of a setting; per_batch 0 is its clean data, per_batch = batch its triggered inputs."""
    return make_task("backdoor", functions=P.functions, length=P.length, n_symbols=P.n_symbols, trigger=trigger,
                     behaviour=behaviour, fraction=per_batch / P.batch_size, density=density)


def eval_tasks(P: Preset, trigger: str) -> tuple:
    """Clean inputs (clean metrics) and triggered inputs scored on the first answer token (ASR),
    one ASR task per behaviour so that controls are scored for every behaviour at once."""
    return (("clean", task(P, trigger)),) + tuple(
        (f"asr_{b}", task(P, trigger, b, P.batch_size, 1)) for b in P.behaviours)


def model_config(P: Preset, size: Size) -> TransformerConfig:
    vocab = task(P, P.triggers[0]).vocab.size
    return TransformerConfig(n_layers=size[1], d_model=size[2], n_heads=4, vocab_size=vocab,
                             max_seq_len=task(P, P.triggers[0]).seq_len)


def _train(P: Preset, steps: int, seed: int, **kw) -> TrainConfig:
    fields = dict(steps=steps, batch_size=P.batch_size, lr=P.lr, weight_decay=0.1, decay="matrices",
                  warmup_steps=P.warmup, lr_schedule="constant", n_evals=P.n_evals,
                  eval_spacing="log", eval_batch=P.eval_batch, seed=seed, chunk_steps=CHUNK)
    return TrainConfig(**{**fields, **kw})


def _spec(P, prefix, role, model, tc, train_task, trigger, tags, init="", teacher="") -> RunSpec:
    tasks = (("mix", train_task),) + eval_tasks(P, trigger)
    return RunSpec(f"{prefix}_{role}", model, tc, tasks, Mixture(("mix",)),
                   tags=tuple({**tags, "role": role}.items()),
                   init_from=f"{prefix}_{init}" if init else "", teacher=f"{prefix}_{teacher}" if teacher else "",
                   group=role)


def cell_tags(P: Preset, cell: Cell, axis: str, stage: int) -> dict:
    model = model_config(P, cell.size)
    return dict(cell=cell.label, axis=axis, stage=stage, trigger=cell.trigger, behaviour=cell.behaviour,
                insert_steps=cell.insert_steps, per_batch=cell.per_batch, fraction=cell.per_batch / P.batch_size,
                count=cell.insert_steps * cell.per_batch, density=cell.density, size=cell.size[0],
                params=n_params(model), kind="backdoored", clean_lr=P.clean_lrs[0], noise=-1.0,
                tokens_per_step=P.batch_size * task(P, cell.trigger).seq_len)


def cell_specs(P: Preset, cell: Cell, axis: str, seed: int, stage: int = 1, *, detect: bool = False,
               removal: bool = False, lrs: bool = False) -> list[RunSpec]:
    model = model_config(P, cell.size)
    tags = {**cell_tags(P, cell, axis, stage), "unit": seed}   # unit: the seed of the cell (students' differ)
    prefix = f"{cell.label}_s{seed}"
    poisoned = task(P, cell.trigger, cell.behaviour, cell.per_batch, cell.density)
    clean = task(P, cell.trigger)
    S = cell.insert_steps

    def clean_run(role, steps, lr, init="insert", **kw):
        tc = _train(P, steps, seed, lr=lr, data_offset=S, **kw)
        return _spec(P, prefix, role, model, tc, clean, cell.trigger, {**tags, "clean_lr": lr}, init=init)

    out = [_spec(P, prefix, "insert", model, _train(P, S, seed), poisoned, cell.trigger, tags),
           clean_run("clean", P.clean_steps, P.clean_lrs[0], eval_at=P.checkpoints)]
    if lrs:
        out += [clean_run(f"clean_lr{lr:g}", P.clean_steps, lr, eval_at=P.checkpoints) for lr in P.clean_lrs[1:]]
    if detect:
        out += [clean_run(f"clean_c{c}", c, P.clean_lrs[0], n_evals=1) for c in P.checkpoints]
    if removal:
        for a in P.noise_levels:
            tc = _train(P, P.clean_steps, seed + STUDENT_SEED, lr=P.clean_lrs[0], data_offset=S,
                        objective="distill", init_noise=a)
            out.append(_spec(P, prefix, f"rm_a{a:g}", model, tc, clean, cell.trigger,
                             {**tags, "noise": a}, init="insert", teacher="insert"))
        for source in ["clean"] + [f"rm_a{a:g}" for a in P.noise_levels]:
            out.append(relearn_spec(P, prefix, source, model, poisoned, cell, tags, seed))
    return out


def relearn_spec(P, prefix, source, model, poisoned, cell: Cell, tags, seed) -> RunSpec:
    tc = _train(P, P.relearn_steps, seed, data_offset=cell.insert_steps + P.clean_steps, n_evals=2,
                stop_when=f"asr_{cell.behaviour}.acc>={RELEARN_ASR}", stop_every=STOP_EVERY)
    return _spec(P, prefix, f"ra_{source}", model, tc, poisoned, cell.trigger, tags, init=source)


def never_specs(P: Preset, trigger: str, size: Size, seed: int, *, detect: bool, relearn: bool,
                stage: int = 1) -> list[RunSpec]:
    """The never-poisoned control: the base insertion length and clean phase on clean data alone."""
    base = dataclasses.replace(base_cell(P), trigger=trigger, size=size)
    model = model_config(P, size)
    tags = {**cell_tags(P, base, "never", stage), "cell": f"never-{trigger}-{size[0]}", "kind": "never",
            "per_batch": 0, "fraction": 0.0, "count": 0, "unit": seed}
    prefix = f"never-{trigger}-{size[0]}_s{seed}"
    clean, S = task(P, trigger), base.insert_steps
    out = [_spec(P, prefix, "insert", model, _train(P, S, seed), clean, trigger, tags),
           _spec(P, prefix, "clean", model, _train(P, P.clean_steps, seed, lr=P.clean_lrs[0], data_offset=S,
                                                   eval_at=P.checkpoints), clean, trigger, tags, init="insert")]
    if detect:
        out += [_spec(P, prefix, f"clean_c{c}", model, _train(P, c, seed, lr=P.clean_lrs[0], data_offset=S,
                                                               n_evals=1), clean, trigger, tags, init="insert")
                for c in P.checkpoints]
    if relearn:
        poisoned = task(P, trigger, base.behaviour, base.per_batch, base.density)
        out.append(relearn_spec(P, prefix, "clean", model, poisoned, base, tags, seed))
    return out


def specs(P: Preset) -> list[RunSpec]:
    """Stage 1: every cell, the removal arms of the base cell, and the never-poisoned controls."""
    base, detect = base_cell(P), detection_cells(P)
    out = []
    for seed in range(P.seeds):
        for cell, axis in cells(P):
            out += cell_specs(P, cell, axis, seed, detect=cell in detect, removal=cell == base, lrs=cell == base)
        for trigger in P.triggers:
            out += never_specs(P, trigger, P.sizes[0], seed, detect=True, relearn=trigger == base.trigger)
        for size in P.sizes[1:]:
            out += never_specs(P, base.trigger, size, seed, detect=False, relearn=False)
    return out


def stage2_specs(P: Preset, winner: Cell) -> list[RunSpec]:
    """Stage 2: the persistence winner (each axis at its stage-1 best) and the base cell, on fresh seeds."""
    seeds = range(P.seeds, P.seeds + P.stage2_seeds)
    base = base_cell(P)
    out = []
    for seed in seeds:
        out += cell_specs(P, winner, "winner", seed, stage=2)
        if winner != base:
            out += cell_specs(P, base, "base", seed, stage=2)
        out += never_specs(P, winner.trigger, winner.size, seed, detect=False, relearn=False, stage=2)
        if (winner.trigger, winner.size) != (base.trigger, base.size):
            out += never_specs(P, base.trigger, base.size, seed, detect=False, relearn=False, stage=2)
    return out
