"""Externally supplied pasts (local-myopic teacher, no-context baseline), gradient
diagnostics, and sweep runs that start from or read other runs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig, init_model, residual_inputs
from toymodels.sweep import RunSpec, final_params, load_rows, run_sweep
from toymodels.tasks import make_task
from toymodels.tasks.base import masked_mean, token_losses
from toymodels.train import TrainConfig, Trainer, param_paths

M = TransformerConfig(n_layers=2, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
COPY = make_task("copy", length=3, n_symbols=7)   # 6 positions, vocab 8


def test_own_past_states_reproduce_the_forward_pass():
    model = init_model(M, 0)
    x = jax.random.randint(jax.random.key(1), (4, 6), 0, 8)
    np.testing.assert_allclose(model(x, past_resid=residual_inputs(model, x)), model(x), atol=1e-6)


def test_no_context_output_ignores_earlier_tokens():
    model = init_model(M, 0)
    x = jax.random.randint(jax.random.key(1), (4, 6), 0, 8)
    y = x.at[:, :-1].set((x[:, :-1] + 3) % 8)       # change every token but the last
    zeros = jnp.zeros((2, 4, 6, 16))
    out_x, out_y = model(x, past_resid=zeros), model(y, past_resid=zeros)
    np.testing.assert_allclose(out_x[:, -1], out_y[:, -1], atol=1e-6)
    assert not np.allclose(model(x)[:, -1], model(y)[:, -1], atol=1e-3)   # with context it does not


def test_teacher_context_trains_and_needs_a_teacher():
    tcfg = TrainConfig(steps=150, batch_size=32, lr=3e-3, n_evals=1, context="teacher")
    trainer = Trainer(M, tcfg, {"copy": COPY})
    runs = trainer.runs(seeds=[0, 1])
    teacher = trainer.init(trainer.runs(seeds=[5, 6])).params
    with pytest.raises(ConfigError, match="needs teacher"):
        trainer.train(runs, progress=False)
    res = trainer.train(runs, teacher=teacher, progress=False)
    loss = res.history["copy"]["loss"]
    assert (loss[:, -1] < loss[:, 0] - 0.3).all()
    live = Trainer(M, dataclasses.replace(tcfg, context="live"), {"copy": COPY})
    with pytest.raises(ConfigError, match="takes no teacher"):
        live.train(runs, teacher=teacher, progress=False)
    with pytest.raises(ConfigError, match="architecture"):
        trainer.train(runs.take(0), teacher=teacher, progress=False)   # 2 teachers for 1 run


def test_teacher_equal_to_the_student_evaluates_like_live():
    tcfg = TrainConfig(steps=1, n_evals=1)
    runs_t = Trainer(M, dataclasses.replace(tcfg, context="teacher"), {"copy": COPY})
    runs_l = Trainer(M, tcfg, {"copy": COPY})
    runs = runs_l.runs(seeds=[0, 1])
    state = runs_l.init(runs)
    got = runs_t.evaluate(state, runs, teacher=state.params)["copy"]["loss"]
    np.testing.assert_allclose(got, runs_l.evaluate(state, runs)["copy"]["loss"], rtol=1e-5)
    none = Trainer(M, dataclasses.replace(tcfg, context="none"), {"copy": COPY}).evaluate(state, runs)
    assert not np.allclose(none["copy"]["loss"], got)


def test_gradient_diagnostics_match_a_direct_computation():
    tcfg = TrainConfig(steps=1, n_evals=1, eval_batch=16, grad_diagnostics=True)
    trainer = Trainer(M, tcfg, {"copy": COPY})
    runs = trainer.runs(seeds=[3])
    state = trainer.init(runs)
    got = trainer.evaluate(state, runs)["copy"]
    model, batch = trainer.model(state, 0), trainer.eval_sets()["copy"]
    graphdef, params = nnx.split(model, nnx.Param)

    def grad(myopic):
        def f(p):
            out = nnx.merge(graphdef, p)(batch.inputs, myopic=myopic)
            return masked_mean(token_losses(out, batch.targets, "xent"), batch.mask)
        return np.concatenate([np.ravel(g) for g in jax.tree.leaves(jax.grad(f)(params))])
    g_myo, g_van = grad(True), grad(False)
    off = g_van - g_myo
    assert np.linalg.norm(off) > 0.05 * np.linalg.norm(g_myo)      # copying needs the past
    np.testing.assert_allclose(got["offdiag_ratio"][0], np.linalg.norm(off) / np.linalg.norm(g_myo), rtol=1e-3)
    np.testing.assert_allclose(got["offdiag_cos"][0], off @ g_myo / np.linalg.norm(off) / np.linalg.norm(g_myo),
                               atol=1e-3)
    with pytest.raises(ConfigError, match="grad_diagnostics"):
        TrainConfig(grad_diagnostics=True, context="none")


def _spec(run_id, steps=30, **kw):
    train = dict(steps=steps, batch_size=8, n_evals=1, lr=3e-3)
    train.update({k: kw.pop(k) for k in list(kw) if k in ("trainable", "context", "seed")})
    return RunSpec(run_id, M, TrainConfig(**train), (("copy", COPY),), **kw)


def test_sweep_runs_start_from_and_read_other_runs(tmp_path):
    specs = [
        _spec("probe", trainable="W_U", init_from="base"),       # listed before its parent on purpose
        _spec("local", context="teacher", teacher="base", init_from="base", steps=10),
        _spec("base", seed=1),
        _spec("base2", seed=2),
    ]
    run_sweep(specs, tmp_path, progress=False)
    base, probe = (final_params(tmp_path, [s]) for s in (specs[2], specs[0]))
    changed = {k for k, a, b in zip(param_paths(base), jax.tree.leaves(base), jax.tree.leaves(probe))
               if not np.array_equal(a, b)}
    assert changed == {"W_U"}                         # everything else is the parent's final state
    assert {r["run"] for r in load_rows(tmp_path)} == {"probe", "local", "base", "base2"}


def test_sweep_dependency_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a run of this sweep"):
        run_sweep([_spec("a", init_from="nope")], tmp_path, progress=False)
    with pytest.raises(ConfigError, match="cycle"):
        run_sweep([_spec("a", init_from="b"), _spec("b", init_from="a")], tmp_path, progress=False)
    with pytest.raises(ConfigError, match="needs teacher"):
        _spec("a", context="teacher")
    wide = dataclasses.replace(_spec("w"), model=dataclasses.replace(M, d_model=32))
    with pytest.raises(ConfigError, match="different model architecture"):
        run_sweep([wide, _spec("a", init_from="w")], tmp_path, progress=False)
