import json

import numpy as np

from toymodels.schedule import NEVER
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
    assert back.stop_step is None and "stop_step" not in log.to_json()   # logs without a criterion: as before


def test_stop_steps_round_trip_and_say_when_every_run_stopped():
    log = _log()
    log.stop_step = np.asarray([20, NEVER, 0], np.int32)
    back = TrainLog.from_json(json.loads(json.dumps(log.to_json())))
    assert back.stop_step.dtype == np.int32 and back.stop_step.tolist() == [20, NEVER, 0]
    assert not back.all_stopped() and not TrainLog().all_stopped()
    back.stop_step[1] = 30
    assert back.all_stopped()
    assert back.result(TrainState({}, {}, 10), n_runs=3, seconds=0.0).stop_step.tolist() == [20, 30, 0]


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
    assert res.stop_step.dtype == np.int32 and res.stop_step.tolist() == [NEVER] * 3   # no criterion
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


# -- the progress line in a notebook (IPython stand-ins: no Jupyter needed) --------------------

def _fake_ipython(monkeypatch, shell, display=None):
    """Put stand-in ``IPython`` / ``IPython.display`` modules where an IPython kernel has its own."""
    import sys
    import types
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell
    shown = types.ModuleType("IPython.display")
    shown.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", shown)


def _clock(monkeypatch):
    import time
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    return now


def test_a_notebook_kernel_is_told_from_a_terminal_without_importing_ipython(monkeypatch):
    import sys
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not Progress.in_notebook() and "IPython" not in sys.modules   # never imported by the check
    ZMQInteractiveShell = type("ZMQInteractiveShell", (), {"config": {}})   # Jupyter's kernel shell
    TerminalInteractiveShell = type("TerminalInteractiveShell", (), {"config": {"TerminalIPythonApp": {}}})
    colab = type("Shell", (), {"config": {"IPKernelApp": {}}})   # another kernel's shell: told by its app
    for shell, kernel in [(None, False), (TerminalInteractiveShell(), False), (ZMQInteractiveShell(), True),
                          (colab(), True)]:
        _fake_ipython(monkeypatch, shell)
        assert Progress.in_notebook() is kernel, shell
        assert Progress(2, 100, 64, 0, enabled=True).mode == ("notebook" if kernel else "terminal")


def test_in_a_notebook_the_line_is_one_display_updated_in_place(monkeypatch, capsys):
    calls = []

    class Handle:
        def update(self, obj, **kw):
            calls.append(("update", obj["text/plain"], kw))

    def display(obj, **kw):
        calls.append(("display", obj["text/plain"], kw))
        return Handle()
    _fake_ipython(monkeypatch, type("ZMQInteractiveShell", (), {})(), display)
    now = _clock(monkeypatch)
    bar = Progress(runs=2, total=100, tokens_per_step=64, start=0, enabled=True)
    for step in (10, 20, 30, 100):
        now[0] += 0.6   # the update at 20 comes 0.6 s after the one at 10: skipped
        bar.update(step, 0.5)
    bar.close()
    assert [c[0] for c in calls] == ["display", "update", "update"]
    assert calls[0][2] == {"raw": True, "display_id": True} and calls[1][2] == {"raw": True}
    assert calls[0][1].startswith("[2 runs] step 10/100 | compiled") and "step 100/100" in calls[-1][1]
    assert capsys.readouterr() == ("", "")


def test_where_the_display_fails_it_prints_a_line_every_few_seconds(monkeypatch, capsys):
    def display(obj, **kw):
        raise RuntimeError("no display ids here")
    _fake_ipython(monkeypatch, type("ZMQInteractiveShell", (), {})(), display)
    now = _clock(monkeypatch)
    bar = Progress(runs=1, total=100, tokens_per_step=64, start=0, enabled=True)
    for step in range(10, 101, 10):   # one update a second
        now[0] += 1.0
        bar.update(step, 0.5)
    bar.close()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[1 run]")]
    assert "\r" not in err and "progress display unavailable: RuntimeError" in err
    assert [line.split()[3] for line in lines] == ["10/100", "60/100", "100/100"]   # every 5 s, and the end
    assert bar.mode == "lines" and Progress.LINE_EVERY_S == 5.0


def test_in_a_terminal_the_line_is_rewritten_in_place(monkeypatch, capsys):
    _fake_ipython(monkeypatch, None)
    bar = Progress(runs=2, total=100, tokens_per_step=64, start=0, enabled=True)
    bar.update(50, 0.5)
    bar.update(100, 0.25)
    bar.close()
    err = capsys.readouterr().err
    assert err.startswith("\r[2 runs] step 50/100 | compiled | loss 0.5000   \r[2 runs] step 100/100")
    assert err.endswith("loss 0.2500   \n")
