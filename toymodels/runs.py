"""The runs axis: per-run hyperparameters as array rows, and where those rows live.

E runs that share array shapes train as one program; everything that differs
between them (seed, lr, weight decay, dropout, myopic beta, mixture events) is a
row of ``Runs``. On several devices the axis is sharded over a 1-D mesh named
"runs"; every stacked tree (params, optimizer state, teachers) is placed the way
the runs are (``place_like``).
"""

from __future__ import annotations

import concurrent.futures
import math
import numbers
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from toymodels.config import ConfigError, check_range, check_seed
from toymodels.model import TransformerConfig
from toymodels.schedule import Mixture, MixtureParams
from toymodels.trainconfig import TrainConfig

Array = jax.Array


class Runs(NamedTuple):
    """Per-run hyperparameters; each field has a leading runs axis E."""
    seed: Array          # (E,) int32
    lr: Array            # (E,) float32
    weight_decay: Array  # (E,)
    dropout: Array       # (E,)
    myopic_beta: Array   # (E,)
    mixture: MixtureParams  # fields (E, ...)

    @property
    def size(self) -> int:
        """Number of runs E."""
        return int(self.seed.shape[0])

    def take(self, i: int | Sequence[int]) -> "Runs":
        """The runs at index (or indices) ``i``, keeping the runs axis."""
        idx = np.atleast_1d(np.asarray(i))
        return jax.tree.map(lambda x: x[idx], self)


# Per-run scalar fields: (lo, hi, lo open, hi open) of the allowed interval.
_RANGES = {"lr": (0.0, math.inf, True, False), "weight_decay": (0.0, math.inf, False, False),
           "dropout": (0.0, 1.0, False, True), "myopic_beta": (0.0, 1.0, False, False)}


def _column(name: str, vals) -> list:
    """One value per run as a list (NumPy and JAX arrays become Python values)."""
    if hasattr(vals, "tolist"):
        vals = vals.tolist()
    if isinstance(vals, (str, bytes)) or not isinstance(vals, Iterable):
        raise ConfigError(f"{name}={vals!r} is not allowed: give a list with one value per run")
    return list(vals)


def _row(name: str, i: int, vals) -> list:
    """Run ``i``'s list of event steps / fractions / weights (a bare number is a list of one)."""
    if isinstance(vals, numbers.Number):
        return [vals]
    if isinstance(vals, (str, bytes)) or not isinstance(vals, Iterable):
        raise ConfigError(f"{name}[{i}]={vals!r} is not allowed: give a list of numbers per run")
    return list(vals)


def make_runs(tcfg: TrainConfig, mcfg: TransformerConfig, mixture: Mixture, *,
              seeds: Sequence[int] | None = None, **per_run: Sequence[Any]) -> Runs:
    """Runs from configs; ``per_run`` overrides a field with one value per run.

    e.g. ``make_runs(t, m, mix, seeds=[0, 1], lr=[1e-3, 3e-3])``; ``event_steps`` takes
    one list of event steps per run, ``fractions`` one list of replay fractions, ``weights``
    one list of task weights. Every value is checked like its config field.
    """
    valid = {"lr", "weight_decay", "dropout", "myopic_beta", "event_steps", "fractions", "weights"}
    unknown = sorted(set(per_run) - valid)
    if unknown:
        raise ConfigError(f"unknown per-run field(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    seeds = [tcfg.seed] if seeds is None else _column("seeds", seeds)
    if not seeds:
        raise ConfigError("seeds=[] is not allowed: give at least one seed (one run per seed)")
    per_run = {k: _column(k, v) for k, v in per_run.items()}
    n = max([len(seeds)] + [len(v) for v in per_run.values()])
    for name, vals in [("seeds", seeds)] + list(per_run.items()):
        if len(vals) not in (1, n):
            raise ConfigError(f"{name} has {len(vals)} values; give 1 or {n} (one per run)")

    def col(vals, default):
        vals = [default] if vals is None else list(vals)
        return vals * n if len(vals) == 1 else vals

    seeds = [check_seed(f"seeds[{i}]", s) for i, s in enumerate(col(seeds, None))]
    defaults = {"lr": tcfg.lr, "weight_decay": tcfg.weight_decay, "dropout": mcfg.dropout,
                "myopic_beta": tcfg.myopic_beta}
    vals = {f: [check_range(f"{f}[{i}]", v, lo, hi, lo_open=lo_open, hi_open=hi_open)
                for i, v in enumerate(col(per_run.get(f), defaults[f]))]
            for f, (lo, hi, lo_open, hi_open) in _RANGES.items()}
    if not tcfg.myopic and any(b != 0.0 for b in vals["myopic_beta"]):
        raise ConfigError(f"myopic_beta={vals['myopic_beta']} is not allowed with myopic=False: only "
                          "myopic training uses a beta; set TrainConfig(myopic=True)")
    mixes = []
    base_w = list(mixture.weights or (1.0,) * len(mixture.tasks))
    for i, (w, st, fr) in enumerate(zip(col(per_run.get("weights"), base_w),
                                        col(per_run.get("event_steps"), [e.step for e in mixture.events]),
                                        col(per_run.get("fractions"), [e.fraction for e in mixture.events]))):
        try:
            mix = mixture.with_values(_row("weights", i, w), _row("event_steps", i, st),
                                      _row("fractions", i, fr))
            mix.check_steps(tcfg.steps)
        except ConfigError as e:
            raise ConfigError(f"run {i}: {e}") from None
        mixes.append(mix)
    mix = MixtureParams(
        jnp.asarray([m.weights or (1.0,) * len(m.tasks) for m in mixes], jnp.float32),
        jnp.asarray([[e.step for e in m.events] for m in mixes], jnp.int32).reshape(n, -1),
        jnp.asarray([[e.fraction for e in m.events] for m in mixes], jnp.float32).reshape(n, -1))
    return Runs(seed=jnp.asarray(seeds, jnp.int32), lr=jnp.asarray(vals["lr"], jnp.float32),
                weight_decay=jnp.asarray(vals["weight_decay"], jnp.float32),
                dropout=jnp.asarray(vals["dropout"], jnp.float32),
                myopic_beta=jnp.asarray(vals["myopic_beta"], jnp.float32), mixture=mix)


def runs_exec(runs: Runs) -> str:
    """How the training chunk walks the runs axis, chosen per backend by measurement.

    On CPU, ``lax.map`` beats ``vmap``: vmap turns each weight-gradient dot into a batched
    Eigen dot and the attention einsums into many tiny ones (measured +19 % tokens/s on 32
    micro models, +18 % on 8 tiny ones, 2 cores, one device), and each run computes exactly
    what it computes alone. On several CPU devices every device maps over its own block
    (``per_device``). On accelerators, vmap lets every device batch its runs.
    """
    return "map" if jax.default_backend() == "cpu" else "vmap"


def runs_devices(tree) -> list[jax.Device]:
    """The devices, in mesh order, over which the runs axis of ``tree``'s first leaf is sharded
    (one device when it is not sharded over a mesh)."""
    x = jax.tree.leaves(tree)[0]
    sharding = getattr(x, "sharding", None)
    if isinstance(sharding, NamedSharding) and sharding.spec[:1] == ("runs",):
        return list(sharding.mesh.devices.flat)
    return list(getattr(x, "devices", lambda: [jax.devices()[0]])())[:1]


_POOL = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="toymodels-per-device")


def per_device(fn: Callable, per_run: tuple[int, ...]) -> Callable:
    """``fn`` (a single-device program over a leading runs axis) run by every device of the
    runs' mesh on its own block of runs, all devices at once; the results are reassembled
    into arrays sharded like the runs.

    The arguments at positions ``per_run`` carry the runs axis (the first of them decides
    the layout); the others are shared. Every device runs the very program one device would,
    on its block, so a run's numbers are bit for bit those of the same run trained anywhere
    else (a ``shard_map`` program is compiled differently and differs in the last bits)."""
    def call(*args):
        devices = runs_devices(args[per_run[0]])
        if len(devices) == 1:
            return fn(*args)
        lead = jax.tree.leaves(args[per_run[0]])[0]
        sharding, n = lead.sharding, lead.shape[0]
        size = n // len(devices)
        local = [d for d in devices if d.process_index == jax.process_index()]
        blocks = {d: slice(i * size, (i + 1) * size) for i, d in enumerate(devices)}

        def split(x):
            if not isinstance(x, jax.Array) or not x.ndim:
                return {d: x for d in local}
            if x.sharding == leaf_sharding(sharding) or (isinstance(x.sharding, NamedSharding)
                                                         and x.sharding.mesh == sharding.mesh
                                                         and x.sharding.spec[:1] == ("runs",)):
                return {s.device: s.data for s in x.addressable_shards}
            host = np.asarray(x)
            return {d: jax.device_put(host[blocks[d]], d) for d in local}

        def shared(x):
            if isinstance(x, jax.Array) and x.ndim:
                return {d: jax.device_put(x, d) for d in local}
            return {d: x for d in local}

        per_dev = {d: [] for d in local}
        for i, a in enumerate(args):
            leaves, treedef = jax.tree.flatten(a)
            pieces = [split(x) if i in per_run else shared(x) for x in leaves]
            for d in local:
                per_dev[d].append(jax.tree.unflatten(treedef, [p[d] for p in pieces]))
        # One thread per device: the first call compiles each device's copy of the program at
        # the same time; later calls only dispatch, and the devices run side by side.
        outs = list(_POOL.map(lambda d: fn(*per_dev[d]), local)) if len(local) > 1 else [fn(*per_dev[local[0]])]

        def join(*leaves):
            return jax.make_array_from_single_device_arrays((n, *leaves[0].shape[1:]), leaf_sharding(sharding),
                                                            list(leaves))
        return jax.tree.map(join, *outs)
    return call


def to_host(tree):
    """Numpy copies of (possibly sharded, possibly multi-host) arrays, on every process."""
    if jax.process_count() > 1:
        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree.map(np.asarray, jax.device_get(tree))


def sync_processes(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (nothing to wait for in one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def runs_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over all devices (every host's, under jax.distributed) named 'runs'."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("runs",))


def default_mesh(n_runs: int, *, divide: bool = False) -> Mesh:
    """Where ``n_runs`` runs train unless told otherwise: all devices on accelerators or under
    jax.distributed; on one process's CPU devices (one per core, see ``toymodels/__init__``) at
    most one device per run, so a lone run keeps the whole machine's threads. ``divide``: the
    largest device count that divides ``n_runs`` (no padding rows; ``Trainer.runs``)."""
    devices = jax.devices()
    if jax.default_backend() != "cpu" or jax.process_count() > 1:
        return runs_mesh(devices)
    d = min(len(devices), n_runs)
    while divide and n_runs % d:
        d -= 1
    return runs_mesh(devices[:d])


def shard_runs(runs: Runs, mesh: Mesh) -> tuple[Runs, int]:
    """Pad the runs axis to a multiple of the mesh size and shard it; returns (runs, n_real).

    Padding repeats the last run; its results are dropped, never written.
    """
    n, d = runs.size, mesh.devices.size
    pad = (-n) % d
    if pad:
        runs = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), runs)
    sharding = NamedSharding(mesh, PartitionSpec("runs"))
    return jax.tree.map(lambda x: jax.device_put(x, sharding), runs), n


def leaf_sharding(sharding):
    """Where a leaf with a leading runs axis goes when the runs axis is placed by ``sharding``."""
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec(*sharding.spec[:1]))
    return sharding


def place_like(tree, sharding):
    """Place every leaf with a leading runs axis the way ``sharding`` places the runs axis."""
    return jax.tree.map(lambda x: jax.device_put(x, leaf_sharding(sharding)) if x.ndim else x, tree)


def abstract_like(tree, sharding):
    """Shapes and dtypes of a stacked tree, each with the place ``place_like`` gives it (a restore
    target: orbax then reads every process's shards straight to their devices, whatever the
    topology that saved them)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=leaf_sharding(sharding)
                                                       if len(x.shape) else None), tree)


def pad_runs(tree, size: int, sharding):
    """A stacked tree padded (repeating the last run) to ``size`` runs and placed like the runs."""
    n = jax.tree.leaves(tree)[0].shape[0]
    if size > n:
        tree = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], size - n, axis=0)]), tree)
    return place_like(tree, sharding)
