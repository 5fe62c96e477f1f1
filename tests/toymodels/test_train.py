import dataclasses
import gc
import json
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.params import param_paths
from toymodels.programs import PROGRAMS_CACHED, param_masks
from toymodels.runs import to_host
from toymodels.schedule import NEVER, Event, Mixture
from toymodels.tasks import Batch, Task, make_task
from toymodels.tasks.base import masked_mean, token_losses
from toymodels.train import Trainer, _per_device_programs, task_configs, validate
from toymodels.trainconfig import LATER_FIELDS, TrainConfig
from toymodels.trainlog import TrainLog, TrainState

MODEL = TransformerConfig(n_layers=1, d_model=32, n_heads=2, vocab_size=16, max_seq_len=16)
MARKOV = make_task("markov", vocab_size=16, length=16)


def _max_param_diff(a, b):
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _member(state, i):
    return jax.tree.map(lambda x: x[i:i + 1], state.params)


def test_loss_goes_down_towards_the_markov_floor():
    tcfg = TrainConfig(steps=300, batch_size=32, lr=3e-3, n_evals=3)
    res = Trainer(MODEL, tcfg, {"markov": MARKOV}).train(progress=False)
    loss = res.history["markov"]["loss"][0]
    assert loss[0] > np.log(16) - 0.2          # starts near uniform
    assert loss[-1] < MARKOV.entropy_rate + 0.15   # ends near the entropy-rate floor
    assert list(res.eval_steps) == [0, 100, 200, 300]


def test_learns_an_algorithmic_task():
    task = make_task("sort", length=4, n_symbols=5)
    cfg = dataclasses.replace(MODEL, n_layers=2, vocab_size=6, max_seq_len=8)
    tcfg = TrainConfig(steps=600, batch_size=64, lr=3e-3, n_evals=2, weight_decay=0.0)
    res = Trainer(cfg, tcfg, {"sort": task}).train(progress=False)
    acc = res.history["sort"]["acc"][0]
    assert acc[0] < 0.5 and acc[-1] > 0.9


def test_ensemble_member_equals_the_same_run_alone():
    tcfg = TrainConfig(steps=50, batch_size=16, n_evals=1)
    trainer = Trainer(MODEL, tcfg, {"markov": MARKOV})
    runs = trainer.runs(seeds=[0, 1, 2], lr=[1e-3, 3e-3, 2e-3], weight_decay=[0.1, 0.0, 0.3])
    ens = trainer.train(runs, progress=False)
    for i in range(3):
        solo = trainer.train(runs.take(i), progress=False)
        assert _max_param_diff(_member(ens.state, i), solo.state.params) <= 1e-5
        np.testing.assert_allclose(ens.history["markov"]["loss"][i], solo.history["markov"]["loss"][0],
                                   atol=1e-5)


def test_same_seed_twice_is_identical_and_seeds_differ():
    tcfg = TrainConfig(steps=20, batch_size=8, n_evals=1)
    trainer = Trainer(MODEL, tcfg, {"markov": MARKOV})
    a = trainer.train(trainer.runs(seeds=[7, 8]), progress=False)
    b = trainer.train(trainer.runs(seeds=[7, 8]), progress=False)
    assert _max_param_diff(a.state.params, b.state.params) == 0.0
    assert _max_param_diff(_member(a.state, 0), _member(a.state, 1)) > 1e-3


def test_chunking_and_resuming_do_not_change_numbers():
    base = TrainConfig(steps=40, batch_size=8, n_evals=4)
    whole = Trainer(MODEL, base, {"markov": MARKOV}).train(progress=False)
    chunked = Trainer(MODEL, dataclasses.replace(base, chunk_steps=3), {"markov": MARKOV}).train(progress=False)
    assert _max_param_diff(whole.state.params, chunked.state.params) == 0.0
    half = Trainer(MODEL, dataclasses.replace(base, steps=20, n_evals=2), {"markov": MARKOV}).train(progress=False)
    resumed = Trainer(MODEL, base, {"markov": MARKOV}).train(state=half.state, progress=False)
    assert _max_param_diff(whole.state.params, resumed.state.params) == 0.0
    assert list(resumed.eval_steps) == [20, 30, 40]


def test_dropout_rate_zero_member_equals_run_without_dropout():
    tcfg = TrainConfig(steps=20, batch_size=8, n_evals=1)
    trainer = Trainer(MODEL, tcfg, {"markov": MARKOV})
    with_dropout = trainer.train(trainer.runs(seeds=[0, 0], dropout=[0.0, 0.3]), progress=False)
    plain = trainer.train(trainer.runs(seeds=[0]), progress=False)
    assert _max_param_diff(_member(with_dropout.state, 0), plain.state.params) <= 1e-6
    assert _max_param_diff(_member(with_dropout.state, 1), plain.state.params) > 1e-4


def test_dropped_task_stops_being_trained():
    # Copy is dropped at step 0: its loss must not improve while markov's does.
    copy = make_task("copy", length=4, n_symbols=8)
    tasks = {"markov": make_task("markov", vocab_size=16, length=8), "copy": copy}
    cfg = dataclasses.replace(MODEL, max_seq_len=8)
    mix = Mixture(("markov", "copy"), events=(Event("drop", "copy", 0),))
    res = Trainer(cfg, TrainConfig(steps=200, batch_size=32, lr=3e-3, n_evals=1), tasks, mix).train(progress=False)
    assert res.history["markov"]["loss"][0, -1] < res.history["markov"]["loss"][0, 0] - 0.3
    # never trained on copy: still around chance over the 9 copy tokens, far from learned
    assert res.history["copy"]["acc"][0, -1] < 0.5


@dataclasses.dataclass(frozen=True)
class _NaNTask(Task):
    name = "nan_regression"
    loss = "mse"
    input_kind = "vectors"
    seq_len = 4
    d_input = 2
    d_output = 1

    def sample(self, key, batch_size, split="train"):
        x = jax.random.normal(key, (batch_size, 4, 2))
        return Batch(x, jnp.full((batch_size, 4, 1), jnp.nan), jnp.ones((batch_size, 4)))


def test_nan_loss_raises_naming_run_and_steps():
    cfg = TransformerConfig(n_layers=1, d_model=8, n_heads=2, max_seq_len=4, input_kind="vectors", d_input=2,
                            output_kind="vectors", d_output=1)
    trainer = Trainer(cfg, TrainConfig(steps=4, batch_size=2, n_evals=1), {"nan": _NaNTask()})
    with pytest.raises(FloatingPointError, match=r"run\(s\) \[0, 1\] during steps 0..4"):
        trainer.train(trainer.runs(seeds=[0, 1]), progress=False)


@pytest.mark.parametrize("build, match", [
    (lambda: Trainer(dataclasses.replace(MODEL, vocab_size=8), TrainConfig(), {"m": MARKOV}), "vocab_size"),
    (lambda: Trainer(dataclasses.replace(MODEL, max_seq_len=8), TrainConfig(), {"m": MARKOV}), "max_seq_len"),
    (lambda: make_task("markvo"), "registered tasks: .*markov"),
    (lambda: Mixture(("a", "b"), events=(Event("drop", "c", 10),)), "not in the mixture"),
    (lambda: Event("pause", "a", 3), "event.kind"),
    (lambda: Trainer(MODEL, TrainConfig(), {"m": MARKOV}, Mixture(("x",))), "not among the tasks"),
    (lambda: Trainer(MODEL, TrainConfig(steps=10, warmup_steps=20), {"m": MARKOV}), "warmup_steps"),
    (lambda: Trainer(MODEL, TrainConfig(), {}), "tasks is empty"),
    (lambda: Trainer(MODEL, TrainConfig(steps=1000), {"m": MARKOV},
                     Mixture(("m",), events=(Event("drop", "m", 99999),))),
     r"event drop:m step=99999 is not allowed: must be <= steps=1000 .*schedule.NEVER"),
    (lambda: Trainer(dataclasses.replace(MODEL, myopic=True), TrainConfig(), {"m": MARKOV}),
     r"model.myopic=True.* not used in training: set train.myopic"),
    (lambda: Trainer(dataclasses.replace(MODEL, myopic_beta=0.5), TrainConfig(), {"m": MARKOV}),
     r"model.myopic_beta=0.5 are not used in training"),
    (lambda: Trainer(MODEL, TrainConfig(), {"m": MARKOV}).runs(seeds=[0, 0], myopic_beta=[0.0, 1.0]),
     r"myopic_beta=\[0.0, 1.0\] is not allowed with myopic=False"),
    (lambda: Trainer(MODEL, TrainConfig(), {"m": MARKOV}).runs(seeds=[]), r"give at least one seed"),
    (lambda: Trainer(MODEL, TrainConfig(stop_when="copy.acc>=0.9"), {"m": MARKOV}),
     r"stop_when='copy.acc>=0.9' names task 'copy'; tasks: m"),
    (lambda: Trainer(MODEL, TrainConfig(stop_when="m.accuracy>=0.9"), {"m": MARKOV}),
     r"task 'm' has no metric 'accuracy'; metrics: acc, exact, loss"),
    (lambda: Trainer(TransformerConfig(n_layers=1, d_model=8, n_heads=2, max_seq_len=4, input_kind="vectors",
                                       d_input=2, output_kind="vectors", d_output=1),
                     TrainConfig(stop_when="nan.acc>=0.5"), {"nan": _NaNTask()}), r"no metric 'acc'; metrics: loss$"),
])
def test_bad_config_raises_before_compiling(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_trainable_filter_freezes_everything_else_and_state_from_params_continues():
    base = TrainConfig(steps=20, batch_size=8, n_evals=1)
    trainer = Trainer(MODEL, base, {"markov": MARKOV})
    first = trainer.train(trainer.runs(seeds=[0, 1]), progress=False)
    head_only = Trainer(MODEL, dataclasses.replace(base, trainable="W_U|ln_final\\..*"), {"markov": MARKOV})
    runs = head_only.runs(seeds=[0, 1])
    start = head_only.state_from_params(first.state.params, runs)
    assert start.step == 0
    res = head_only.train(runs, start, progress=False)
    for path, a, b in zip(param_paths(first.state.params), jax.tree.leaves(first.state.params),
                          jax.tree.leaves(res.state.params)):
        changed = bool(jnp.any(a != b))
        assert changed == (path == "W_U" or path.startswith("ln_final.")), path


def test_trainable_must_match_a_parameter():
    with pytest.raises(ConfigError, match="matches no parameter; parameters: W_E"):
        Trainer(MODEL, TrainConfig(trainable="unembed"), {"markov": MARKOV})


def test_extra_eval_steps_join_the_grid():
    tcfg = TrainConfig(steps=100, n_evals=2, eval_at=(7, 8, 50), batch_size=4)
    res = Trainer(MODEL, tcfg, {"markov": MARKOV}).train(progress=False)
    assert list(res.eval_steps) == [0, 7, 8, 50, 100]


def test_validate_names_the_mismatch_before_anything_compiles():
    vectors = dataclasses.replace(MODEL, input_kind="vectors", d_input=2, output_kind="vectors", d_output=1)
    with pytest.raises(ConfigError, match="has tokens inputs but model.input_kind='vectors'"):
        validate(vectors, TrainConfig(), {"m": MARKOV}, Mixture(("m",)))
    with pytest.raises(ConfigError, match="uses loss 'xent', which needs output_kind=logits"):
        validate(dataclasses.replace(MODEL, output_kind="vectors", d_output=2), TrainConfig(), {"m": MARKOV},
                 Mixture(("m",)))
    validate(MODEL, TrainConfig(), {"m": MARKOV}, Mixture(("m",)))   # a good config passes


def test_task_configs_name_every_task_and_its_fields():
    cfg = task_configs({"b": MARKOV, "a": make_task("copy", length=3, n_symbols=4)})
    assert list(cfg) == ["a", "b"]
    assert cfg["b"]["name"] == "markov" and cfg["b"]["vocab_size"] == 16 and cfg["a"]["length"] == 3


def test_describe_model_and_abstract_state_agree_with_init():
    trainer = Trainer(MODEL, TrainConfig(steps=1, n_evals=1), {"markov": MARKOV})
    runs = trainer.runs(seeds=[3, 4])
    state = trainer.init(runs)
    abstract = trainer.abstract_state(runs)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(abstract.params)] == \
        [(x.shape, x.dtype) for x in jax.tree.leaves(state.params)]
    desc = trainer.describe(runs)
    assert desc["runs"]["seed"] == [3, 4] and desc["model"]["d_model"] == 32 and "markov" in desc["tasks"]
    assert not set(LATER_FIELDS) & set(desc["train"])   # unused newer fields: described (checkpointed) as before
    model_leaves = jax.tree.leaves(nnx.state(trainer.model(state, run=1), nnx.Param))
    for got, stacked in zip(model_leaves, jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(stacked[1]))
    sets = trainer.eval_sets()
    assert sets["markov"].inputs.shape[0] == trainer.train_cfg.eval_batch


# -- where attention reads its past from (train.context) and gradient diagnostics --------------

M2 = TransformerConfig(n_layers=2, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
COPY = make_task("copy", length=3, n_symbols=7)   # 6 positions, vocab 8


def test_teacher_context_trains_and_needs_a_teacher():
    tcfg = TrainConfig(steps=150, batch_size=32, lr=3e-3, n_evals=1, context="teacher")
    trainer = Trainer(M2, tcfg, {"copy": COPY})
    runs = trainer.runs(seeds=[0, 1])
    teacher = trainer.init(trainer.runs(seeds=[5, 6])).params
    with pytest.raises(ConfigError, match="needs teacher"):
        trainer.train(runs, progress=False)
    res = trainer.train(runs, teacher=teacher, progress=False)
    loss = res.history["copy"]["loss"]
    assert (loss[:, -1] < loss[:, 0] - 0.3).all()
    live = Trainer(M2, dataclasses.replace(tcfg, context="live"), {"copy": COPY})
    with pytest.raises(ConfigError, match="takes no teacher"):
        live.train(runs, teacher=teacher, progress=False)
    with pytest.raises(ConfigError, match="architecture"):
        trainer.train(runs.take(0), teacher=teacher, progress=False)   # 2 teachers for 1 run


def test_teacher_equal_to_the_student_evaluates_like_live():
    tcfg = TrainConfig(steps=1, n_evals=1)
    runs_t = Trainer(M2, dataclasses.replace(tcfg, context="teacher"), {"copy": COPY})
    runs_l = Trainer(M2, tcfg, {"copy": COPY})
    runs = runs_l.runs(seeds=[0, 1])
    state = runs_l.init(runs)
    got = runs_t.evaluate(state, runs, teacher=state.params)["copy"]["loss"]
    np.testing.assert_allclose(got, runs_l.evaluate(state, runs)["copy"]["loss"], rtol=1e-5)
    none = Trainer(M2, dataclasses.replace(tcfg, context="none"), {"copy": COPY}).evaluate(state, runs)
    assert not np.allclose(none["copy"]["loss"], got)


def test_gradient_diagnostics_match_a_direct_computation():
    tcfg = TrainConfig(steps=1, n_evals=1, eval_batch=16, grad_diagnostics=True)
    trainer = Trainer(M2, tcfg, {"copy": COPY})
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


def test_an_event_that_never_fires_is_allowed_beyond_steps():
    mix = Mixture(("m",), events=(Event("drop", "m", NEVER),))
    runs = Trainer(MODEL, TrainConfig(steps=10), {"m": MARKOV}, mix).runs(event_steps=[[NEVER], [3]])
    assert to_host(runs.mixture.event_steps).tolist() == [[NEVER], [3]]


def test_model_of_a_run_out_of_range_names_the_run_count():
    trainer = Trainer(MODEL, TrainConfig(), {"m": MARKOV})
    state = TrainState({"w": jnp.zeros((2, 3))}, None, 0)
    for run in (7, 2, -3, 1.0):
        with pytest.raises(IndexError, match=r"run=.* is out of range: this state holds 2 run\(s\) \(0..1\)"):
            trainer.model(state, run=run)


# -- continuing a trained state on a continued data stream --------------------------------------

TWO = {"markov": MARKOV, "sort": make_task("sort", length=4, n_symbols=8)}


def test_continuing_equals_the_uninterrupted_run_bit_for_bit():
    # Constant lr, no warmup: n steps, then k more continued, is n + k steps (events and dropout too).
    mix = Mixture(("markov", "sort"), events=(Event("drop", "sort", 15),))
    trainer = Trainer(MODEL, TrainConfig(steps=30, batch_size=8, n_evals=1, chunk_steps=10), TWO, mix)
    runs = trainer.runs(seeds=[0, 1], dropout=[0.0, 0.1], event_steps=[[15], [5]])
    at_10 = []
    whole = trainer.train(runs, progress=False, on_chunk=lambda state, log: at_10.append(
        TrainState(*jax.tree.map(jnp.copy, state[:2]), state.step)) if state.step == 10 else None)
    more = trainer.continue_training(at_10[0], runs, steps=20, progress=False)
    assert more.state.step == 20
    for a, b in zip(jax.tree.leaves((whole.state.params, whole.state.opt)),
                    jax.tree.leaves((more.state.params, more.state.opt))):
        np.testing.assert_array_equal(a, b)


def test_a_continuation_draws_new_batches_instead_of_replaying_the_first():
    trainer = Trainer(MODEL, TrainConfig(steps=10, batch_size=8, n_evals=1), {"markov": MARKOV})
    runs = trainer.runs(seeds=[0, 1])
    first = trainer.init(runs)._replace(step=10)   # as if 10 steps into its data stream
    cont = trainer.continue_training(first, runs, steps=1, keep_optimizer=False, progress=False)
    # One step from the same params: its training loss is the loss of the batch it drew.
    replay_t = Trainer(MODEL, TrainConfig(steps=1, batch_size=8, n_evals=1), {"markov": MARKOV})
    replay = replay_t.train(runs, replay_t.state_from_params(first.params, runs), progress=False)
    assert (np.abs(cont.train_loss - replay.train_loss) > 1e-4).all()      # not step 0's batch ...
    at_10 = dataclasses.replace(replay_t.train_cfg, data_offset=10)
    after = Trainer(MODEL, at_10, {"markov": MARKOV})
    same = after.train(runs, after.state_from_params(first.params, runs), progress=False)
    np.testing.assert_array_equal(cont.train_loss, same.train_loss)       # ... but step 10's
    assert _max_param_diff(cont.state.params, same.state.params) == 0.0


def test_continuation_carries_runs_and_refuses_what_would_be_wrong():
    trainer = Trainer(MODEL, TrainConfig(steps=10), {"markov": MARKOV})
    runs = trainer.runs(seeds=[0, 1], lr=[1e-3, 2e-3], weight_decay=[0.0, 0.2])
    abstract = trainer.abstract_state(runs)
    zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)  # noqa: E731
    state = TrainState(zeros(abstract.params), zeros(abstract.opt), 10)
    with pytest.raises(ConfigError, match="keep_optimizer=True needs the same trained parameters"):
        trainer.continuation(state, runs, steps=5, trainable="W_U")
    with pytest.raises(ConfigError, match="data_offset is set by continue_training"):
        trainer.continuation(state, runs, steps=5, data_offset=3)
    with pytest.raises(ConfigError, match="unknown field.*learning_rate"):
        trainer.continuation(state, runs, steps=5, learning_rate=3e-3)
    nxt, nruns, start = trainer.continuation(state, runs, steps=5, trainable=".*")   # the same set: allowed
    assert (nxt.train_cfg.steps, nxt.train_cfg.data_offset, start.step) == (5, 10, 0)
    assert to_host(nruns.weight_decay).tolist() == [0.0, np.float32(0.2)] and to_host(nruns.seed).tolist() == [0, 1]
    nxt, nruns, _ = trainer.continuation(state, runs, steps=5, lr=5e-3, mixture=Mixture(("markov",), (2.0,)))
    assert to_host(nruns.lr).tolist() == [np.float32(5e-3)] * 2 and to_host(nruns.mixture.weights).tolist() == [[2.0]] * 2


# -- training until a criterion --------------------------------------------------------------

STOP = TrainConfig(steps=60, batch_size=8, n_evals=6, chunk_steps=10, stop_when="markov.loss<=2.45", stop_every=10)


@pytest.fixture(scope="module")
def stopped():
    """3 runs (lr 3e-3, 1e-3, 3e-4) that meet the criterion at different steps; each chunk end's
    state (on the host) and log (through JSON) as a checkpoint would keep them."""
    trainer = Trainer(MODEL, STOP, {"markov": MARKOV})
    runs = trainer.runs(seeds=[0, 0, 0], lr=[3e-3, 1e-3, 3e-4])
    seen = {}

    def keep(state, log):
        seen[state.step] = (to_host((state.params, state.opt)), json.loads(json.dumps(log.to_json())))
    return trainer, runs, trainer.train(runs, progress=False, on_chunk=keep), seen


def test_each_run_stops_at_the_first_check_where_its_own_evaluation_meets_the_criterion(stopped):
    _, runs, res, _ = stopped
    assert len(set(res.stop_step.tolist())) == 3 and (res.stop_step < STOP.steps).all()
    alone = Trainer(MODEL, dataclasses.replace(STOP, stop_when=""), {"markov": MARKOV})   # evals every 10 steps
    for i in range(3):
        plain = alone.train(runs.take(i), progress=False)
        met = plain.history["markov"]["loss"][0] <= np.float32(2.45)
        assert res.stop_step[i] == plain.eval_steps[np.argmax(met)] and met.any()


def test_a_stopped_run_stays_frozen_and_is_still_evaluated(stopped):
    _, _, res, seen = stopped
    for i, s in enumerate(res.stop_step.tolist()):
        run = {t: [x[i] for x in jax.tree.leaves(state)] for t, (state, _) in seen.items()}   # params and opt
        for t in (t for t in seen if t > s):
            assert all(np.array_equal(a, b) for a, b in zip(run[s], run[t])), (i, s, t)
        if s - 10 in seen:   # trained until then
            assert not np.array_equal(run[s - 10][0], run[s][0])
        later = res.history["markov"]["loss"][i, list(res.eval_steps).index(s):]
        assert (later == later[0]).all()


def test_training_ends_once_every_run_has_stopped_with_or_without_a_callback(stopped):
    trainer, runs, res, _ = stopped
    assert list(res.chunk_ends) == list(range(10, int(res.stop_step.max()) + 1, 10))   # no chunk after
    assert res.state.step == STOP.steps and list(res.eval_steps) == list(range(0, 61, 10))
    again = trainer.train(runs, progress=False)
    assert list(again.chunk_ends) == list(res.chunk_ends) and again.stop_step.tolist() == res.stop_step.tolist()
    assert _max_param_diff(again.state.params, res.state.params) == 0.0


def test_resuming_mid_training_keeps_the_stop_steps_and_every_number(stopped):
    trainer, runs, res, seen = stopped
    (params, opt), log = seen[20]
    assert 0 < (TrainLog.from_json(log).stop_step != NEVER).sum() < 3   # some runs stopped, not all
    state = TrainState(jax.tree.map(jnp.asarray, params), jax.tree.map(jnp.asarray, opt), 20)
    resumed = trainer.train(runs, state, log=TrainLog.from_json(log), progress=False)
    assert resumed.stop_step.tolist() == res.stop_step.tolist()
    assert _max_param_diff(resumed.state.params, res.state.params) == 0.0
    np.testing.assert_array_equal(resumed.history["markov"]["loss"], res.history["markov"]["loss"])
    np.testing.assert_array_equal(resumed.train_loss, res.train_loss)
    assert list(resumed.chunk_ends) == list(res.chunk_ends)


def test_bf16_mixed_precision_trains_like_fp32_and_keeps_fp32_state():
    fp32 = TrainConfig(steps=150, batch_size=32, lr=3e-3, n_evals=1)
    bf16 = dataclasses.replace(fp32, precision="bf16")
    res = {c.precision: Trainer(MODEL, c, {"markov": MARKOV}).train(progress=False) for c in (fp32, bf16)}
    # master weights and Adam's moments stay float32
    assert {x.dtype for x in jax.tree.leaves((res["bf16"].state.params, res["bf16"].state.opt))
            if jnp.issubdtype(x.dtype, jnp.floating)} == {jnp.dtype(jnp.float32)}
    start, end = (res[p].history["markov"]["loss"][0] for p in ("fp32", "bf16"))
    assert end[-1] < end[0] - 0.3                      # it learns
    assert abs(end[-1] - start[-1]) < 0.05             # to within bf16 rounding of the fp32 run
    assert _max_param_diff(res["bf16"].state.params, res["fp32"].state.params) > 0   # and is not fp32
    # an fp32 config is described (saved, hashed) without the field; a bad value names it
    assert "precision" not in fp32.as_dict() and bf16.as_dict()["precision"] == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")


def test_programs_beyond_the_cache_bound_are_released():
    """Built programs (and their per-device wrappers) are cached up to PROGRAMS_CACHED: older ones are
    freed, with their compiled executables, so a long study does not run out of memory maps."""
    task = make_task("sort")
    model = TransformerConfig(n_layers=1, d_model=8, n_heads=2, vocab_size=task.vocab.size, max_seq_len=task.seq_len)

    def built(steps):
        trainer = Trainer(model, TrainConfig(steps=steps, batch_size=4), {"t": task})
        programs = trainer.programs(trainer.runs(seeds=[0]))
        return programs, _per_device_programs(programs)
    first, wrapped = built(2)
    refs = [weakref.ref(first.chunk), weakref.ref(wrapped.chunk)]
    assert built(2)[1] is wrapped            # equal configs share one wrapper
    del first, wrapped
    for steps in range(3, 3 + PROGRAMS_CACHED + 1):
        built(steps)
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_objective_none_is_weight_decay_alone():
    """No data gradient: every decayed parameter is multiplied by (1 - lr * wd) per step, the rest
    stay bitwise; the data loss is still reported."""
    lr, wd, steps = 1e-2, 0.5, 10
    base = TrainConfig(steps=steps, batch_size=8, n_evals=1, lr=lr, weight_decay=wd, warmup_steps=0,
                       lr_schedule="constant", decay="matrices")
    trainer = Trainer(MODEL, dataclasses.replace(base, objective="none"), {"markov": MARKOV})
    runs = trainer.runs(seeds=[0])
    start = trainer.init(runs)
    before = jax.tree.map(np.asarray, start.params)
    res = trainer.train(runs, start, progress=False)
    decayed = dict(zip(param_paths(before), param_masks(base, before)[1]))
    for path, a, b in zip(param_paths(before), jax.tree.leaves(before), jax.tree.leaves(res.state.params)):
        if decayed[path]:
            np.testing.assert_allclose(np.asarray(b), a * (1 - lr * wd) ** steps, rtol=2e-6, atol=0, err_msg=path)
        else:
            np.testing.assert_array_equal(np.asarray(b), a, err_msg=path)
    assert any(decayed.values()) and not all(decayed.values())
    assert np.all(np.asarray(res.train_loss) > 0)
