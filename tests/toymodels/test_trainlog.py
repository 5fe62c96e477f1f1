import json

import numpy as np

from toymodels.trainlog import Progress, TrainLog, TrainState


def _log():
    rng = np.random.default_rng(0)
    f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    return TrainLog({0: {"copy": {"loss": f32(3), "acc": f32(3)}, "sort": {"loss": f32(3), "acc": f32(3)}},
                     10: {"copy": {"loss": f32(3), "acc": f32(3)}, "sort": {"loss": f32(3), "acc": f32(3)}}},
                    [f32(3), f32(3)], [5, 10])


def test_to_json_from_json_round_trips_exactly():
    log = _log()
    back = TrainLog.from_json(json.loads(json.dumps(log.to_json())))   # through real JSON text
    assert sorted(back.evals) == [0, 10] and back.chunk_ends == [5, 10]
    for step in log.evals:
        for task, ms in log.evals[step].items():
            for m, v in ms.items():
                assert back.evals[step][task][m].dtype == np.float32
                np.testing.assert_array_equal(back.evals[step][task][m], v)
    for a, b in zip(log.train_loss, back.train_loss):
        np.testing.assert_array_equal(a, b)
    assert back.to_json() == log.to_json()


def test_result_stacks_evals_and_chunk_losses_per_run():
    log = _log()
    state = TrainState({}, {}, 10)
    res = log.result(state, n_runs=3, seconds=1.5)
    assert res.state is state and res.seconds == 1.5
    assert res.eval_steps.tolist() == [0, 10] and res.chunk_ends.tolist() == [5, 10]
    assert sorted(res.history) == ["copy", "sort"] and res.history["copy"]["loss"].shape == (3, 2)
    np.testing.assert_array_equal(res.history["sort"]["acc"][:, 1], log.evals[10]["sort"]["acc"])
    assert res.train_loss.shape == (3, 2)
    np.testing.assert_array_equal(res.train_loss[:, 0], log.train_loss[0])
    empty = TrainLog().result(state, n_runs=4, seconds=0.0)
    assert empty.train_loss.shape == (4, 0) and empty.history == {} and empty.eval_steps.size == 0


def test_progress_prints_nothing_when_disabled(capsys):
    bar = Progress(runs=2, total=100, tokens_per_step=64, start=0, enabled=False)
    for step in (10, 50, 100):
        bar.update(step, 1.0)
    bar.close()
    assert capsys.readouterr() == ("", "")
    done = Progress(runs=1, total=100, tokens_per_step=64, start=100, enabled=True)   # nothing left to do
    done.update(100, 1.0)
    done.close()
    assert capsys.readouterr() == ("", "")


def test_progress_reports_runs_step_and_loss(capsys):
    bar = Progress(runs=2, total=100, tokens_per_step=64, start=0, enabled=True)
    bar.update(100, 0.5)
    bar.close()
    err = capsys.readouterr().err
    assert "[2 runs] step 100/100" in err and "loss 0.5000" in err and err.endswith("\n")
