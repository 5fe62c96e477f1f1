"""Orbax checkpoints of a group's training: save, restore, and refuse another config's.

A checkpoint holds the train state (params and optimizer state of every run, by
name: ``state/params/blocks.0.attn.W_QKV``, ``state/opt/mu/blocks.0.attn.W_QKV``,
``state/opt/count``; ``state_names``), the step, the host-side ``TrainLog`` and the
resolved config, so orbax alone reads it (``ocp.StandardCheckpointer().metadata``).
Checkpoints written before leaves had names (``state/00000``, ... in leaf order) still
restore. Data and dropout keys derive from (seed, step), so the seed in
the config plus the step IS the RNG state. Orbax writes each checkpoint to a
temporary folder and renames it when complete, so a killed save is never read (and
its temporary folder is removed when the folder is next opened). A complete checkpoint
that no longer restores (a file truncated by a crash or a full disk) is moved aside to
``damaged-<step>`` and the next older one is used: see ``Checkpointer.restore``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from toymodels.config import ConfigError
from toymodels.params import param_paths
from toymodels.trainlog import TrainLog, TrainState


def _canonical(obj: Any) -> Any:
    """JSON-normalised data (tuples become lists), so saved and live configs compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def config_diff(a: Any, b: Any, saved: str = "checkpoint", path: str = "") -> list[str]:
    """Every leaf where two JSON configs differ, as "path: <saved> has a, this run has b"."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += config_diff(a.get(k), b.get(k), saved, f"{path}.{k}" if path else str(k))
        return out
    return [] if a == b else [f"{path}: {saved} has {a!r}, this run has {b!r}"]


def _key_name(key) -> str:
    return str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))


def tree_names(tree) -> list[str]:
    """Names of a tree's leaves, in leaf order: dict keys (a parameter path) join with ".",
    anything else (an optax state's fields, a tuple's positions) starts a "/" part; the
    ``value`` of an nnx Variable is left out. ``mu`` of an adam state: ``mu/blocks.0.attn.W_QKV``."""
    out = []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        parts, dotted = [], []
        for key in path:
            if isinstance(key, jax.tree_util.DictKey):
                dotted.append(_key_name(key))
            elif not (isinstance(key, jax.tree_util.GetAttrKey) and key.name == "value"):
                parts += [".".join(dotted)] if dotted else []
                parts.append(_key_name(key))
                dotted = []
        out.append("/".join(parts + ([".".join(dotted)] if dotted else [])))
    return out


def state_names(state: TrainState) -> list[str]:
    """The checkpoint name of every leaf of ``(state.params, state.opt)``, in leaf order:
    ``params/blocks.0.attn.W_QKV`` (``toymodels.params.param_paths``), ``opt/mu/blocks.0.attn.W_QKV``,
    ``opt/count``."""
    names = [f"params/{p}" for p in param_paths(state.params)] + [f"opt/{n}" for n in tree_names(state.opt)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"leaves of the train state share a checkpoint name: {repeated}")
    return names


def _nest(names: list[str], leaves: list) -> dict:
    """``{"params": {"blocks.0.attn.W_QKV": x, ...}, "opt": {"mu": {...}, "count": x}}``: one dict
    level per "/" part of a name."""
    out: dict = {}
    for name, leaf in zip(names, leaves):
        *outer, last = name.split("/")
        node = out
        for part in outer:
            node = node.setdefault(part, {})
        node[last] = leaf
    return out


def _unnest(tree: dict, names: list[str]) -> list:
    """The leaves of a ``_nest``ed tree, in the order of ``names``."""
    out = []
    for name in names:
        node = tree
        for part in name.split("/"):
            node = node[part]
        out.append(node)
    return out


def _numbered(leaves: list) -> dict:
    """The layout of checkpoints written before leaves had names: ``{"00000": leaf 0, ...}``."""
    return {f"{i:05d}": x for i, x in enumerate(leaves)}


def _default_sharding() -> jax.sharding.Sharding:
    """Where a restored leaf goes when the target does not say (readers: ``toymodels.store``): one
    device in one process, every device under jax.distributed. Never the saving job's layout, which
    another device count or process count could not read ("topology mismatch")."""
    if jax.process_count() == 1:
        return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("devices",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def _why(err: BaseException) -> str:
    """An exception as one short line (orbax/tensorstore messages run to pages)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:160]}"


class Checkpointer:
    """Saves (state, log, config) under ``directory``; refuses checkpoints of another config."""

    def __init__(self, directory: str | os.PathLike, config: dict, max_to_keep: int = 2,
                 read_only: bool = False):
        """``read_only``: for readers (``toymodels.store``): creates, cleans and saves nothing."""
        self.directory = Path(directory).absolute()
        self.config = _canonical(config)
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=not read_only, enable_async_checkpointing=False,
                cleanup_tmp_directories=not read_only, read_only=read_only),
            item_handlers={"state": ocp.StandardCheckpointHandler(), "log": ocp.JsonCheckpointHandler(),
                           "config": ocp.JsonCheckpointHandler()})

    def save(self, state: TrainState, log: TrainLog) -> None:
        """Write (state, log, config) as the checkpoint of ``state.step``; returns when it is on disk."""
        leaves = jax.tree.leaves((state.params, state.opt))
        self.manager.save(state.step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_nest(state_names(state), leaves)),
            log=ocp.args.JsonSave(log.to_json()),
            config=ocp.args.JsonSave(self.config)))
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def restore(self, abstract: TrainState, check_config: bool = True) -> tuple[TrainState, TrainLog] | None:
        """The newest checkpoint that restores, or None if there is none.

        A checkpoint of another config is refused (ConfigError naming the fields). A newer
        one that does not restore (damaged) is moved aside to ``damaged-<step>`` with one
        printed line, and the next older one is tried: orbax never saves a step at or below
        its newest, so a damaged newest one left in place would block every later save.
        If none restores, training starts from scratch (said in one line): the numbers are
        the same, only time is lost, and nothing is deleted.
        """
        skipped = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                return self._restore(step, abstract, check_config)
            except ConfigError:
                raise
            except Exception as err:   # orbax/tensorstore raise plain Exception for a truncated file
                aside = self._set_aside(step)
                skipped.append(step)
                print(f"checkpoint step {step} in {self.directory} does not restore ({_why(err)}); "
                      + (f"moved it to {aside.name} and trying an older one" if aside else "skipping it"),
                      flush=True)
        if skipped:
            print(f"no checkpoint in {self.directory} restores (damaged: steps {skipped}); "
                  "training starts from step 0", flush=True)
        return None

    def restore_step(self, step: int, abstract: TrainState,
                     check_config: bool = True) -> tuple[TrainState, TrainLog]:
        """Exactly checkpoint ``step`` (e.g. a group's final state); a ConfigError naming the
        folder if it is missing or does not restore. Moves nothing: readers never write."""
        if step not in self.manager.all_steps():
            raise ConfigError(f"no checkpoint of step {step} in {self.directory} (steps there: "
                              f"{sorted(self.manager.all_steps())})")
        try:
            return self._restore(step, abstract, check_config)
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(f"checkpoint step {step} in {self.directory} does not restore ({_why(err)}); "
                              "it is damaged") from err

    def _restore(self, step: int, abstract: TrainState, check_config: bool) -> tuple[TrainState, TrainLog]:
        saved = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        diffs = config_diff(saved, self.config) if check_config else []
        if diffs:
            raise ConfigError(f"checkpoint in {self.directory} (step {step}) was written by a different "
                              "config; refusing to resume. Differences:\n  " + "\n  ".join(diffs[:20])
                              + "\nUse another output folder, or delete the checkpoints to start over.")
        leaves, treedef = jax.tree.flatten((abstract.params, abstract.opt))
        leaves = [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None) or _default_sharding())
                  for x in leaves]
        names = state_names(abstract)
        numbered = all(k.isdigit() for k in self.manager.item_metadata(step)["state"])   # written before names
        target = _numbered(leaves) if numbered else _nest(names, leaves)
        got = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), log=ocp.args.JsonRestore()))
        restored = [got["state"][k] for k in sorted(got["state"])] if numbered else _unnest(got["state"], names)
        params, opt = jax.tree.unflatten(treedef, restored)
        return TrainState(params, opt, int(step)), TrainLog.from_json(got["log"])

    def _set_aside(self, step: int) -> Path | None:
        """Rename a damaged step folder to ``damaged-<step>`` (orbax ignores that name); process 0 only."""
        src = self.directory / str(step)
        if jax.process_index() != 0 or not src.is_dir():
            return None
        dst = self.directory / f"damaged-{step}"
        n = 1
        while dst.exists():
            n += 1
            dst = self.directory / f"damaged-{step}.{n}"
        os.rename(src, dst)
        self.manager.reload()
        return dst

    def close(self) -> None:
        """Release the checkpoint manager."""
        self.manager.close()
