"""Logging callbacks: one ChunkEvent per chunk, equal to the rows a sweep writes; TensorBoard
scalars read back from the event file; callbacks reaching sweeps a study starts."""

import dataclasses
import struct
import sys
import types

import numpy as np
import pytest
from extras import require

from studies.common import run_study
from toymodels.callbacks import ChunkEvent, ChunkEvents, TensorBoardLogger, active_callbacks, sweep_callbacks
from toymodels.checkpoint import Checkpointer
from toymodels.fit import fit
from toymodels.model import TransformerConfig
from toymodels.runspec import RunSpec
from toymodels.store import load_rows
from toymodels.sweep import run_sweep
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig
from toymodels.trainlog import TrainLog

M = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
TASKS = (("markov", make_task("markov", vocab_size=8, length=8)),)
TRAIN = TrainConfig(steps=20, batch_size=4, n_evals=2, chunk_steps=5)   # chunks end at 5, 10, 15, 20; evals 0, 10, 20


def _specs():
    return [RunSpec(f"s{i}", M, dataclasses.replace(TRAIN, seed=i, lr=1e-3 * (i + 1)), TASKS) for i in range(2)]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """(results folder, events) of a 2-run sweep with a recording callback."""
    out, events = tmp_path_factory.mktemp("sweep"), []
    run_sweep(_specs(), out, progress=False, callbacks=[events.append])
    return out, events


def _rows_by_key(out):
    return {(r["run"], r["step"], r["task"], r["metric"]): r["value"] for r in load_rows(out)}


def _event_rows(events) -> dict:
    """The (run, step, task, metric) -> value rows the events carry, as metrics.csv names them."""
    rows = {}
    for e in events:
        for i, run in enumerate(e.run_ids):
            rows[(run, e.step, "train", "train_loss")] = float(e.train_loss[i])
            for step, metrics in ((e.start, e.start_evals), (e.step, e.evals)):
                rows.update({(run, step, t, m): float(v[i]) for t, ms in metrics.items() for m, v in ms.items()})
    return rows


def test_one_event_per_chunk_carrying_exactly_the_rows_the_sweep_wrote(swept):
    out, events = swept
    assert all(isinstance(e, ChunkEvent) for e in events)
    assert [(e.start, e.step) for e in events] == [(0, 5), (5, 10), (10, 15), (15, 20)]
    assert {e.run_ids for e in events} == {("s0", "s1")}
    assert {e.group for e in events} == {p.name for p in (out / "groups").iterdir()}
    assert [sorted(e.evals) for e in events] == [[], ["markov"], [], ["markov"]]   # on eval steps only
    assert [bool(e.start_evals) for e in events] == [True, False, False, False]   # step 0, before the first chunk
    # host data only: the log's numpy arrays, nothing fetched from a device for the callback
    assert all(isinstance(v, np.ndarray) for e in events for v in [e.train_loss, *e.evals.get("markov", {}).values()])
    assert _event_rows(events) == _rows_by_key(out)   # every row of metrics.csv, bit for bit, and no other


def test_chunk_events_leave_out_padding_and_a_stop_jump():
    log = TrainLog({0: {"t": {"acc": np.asarray([0.1, 0.2, 0.2], np.float32)}}})
    got = []
    events = ChunkEvents([got.append], "g", ["a", "b"], None, 0)   # 3 runs, the last one padding
    for end, loss in ((5, 1.0), (10, 0.5)):
        log.train_loss.append(np.asarray([loss, 2 * loss, 2 * loss], np.float32))
        log.chunk_ends.append(end)
        events(log)
    events(log)   # a stop criterion's jump to the end: on_chunk again with no new chunk
    assert [(e.start, e.step) for e in got] == [(0, 5), (5, 10)]
    np.testing.assert_array_equal(got[1].train_loss, [0.5, 1.0])
    np.testing.assert_array_equal(got[0].start_evals["t"]["acc"], np.float32([0.1, 0.2]))
    resumed = []
    ChunkEvents([resumed.append], "g", ["a", "b"], log, 10)(TrainLog(log.evals, log.train_loss + log.train_loss[-1:], [5, 10, 15]))
    assert [(e.start, e.step) for e in resumed] == [(10, 15)]


class _Killed(Exception):
    pass


def test_fit_events_after_a_resume_continue_where_the_checkpoint_stood(tmp_path):
    trainer = Trainer(M, TRAIN, dict(TASKS))
    runs = trainer.runs(seeds=[0, 1])
    ckpt = Checkpointer(tmp_path, trainer.describe(runs))

    def killed_at_10(state, log):
        if state.step == 10:
            ckpt.save(state, log)
            raise _Killed
    with pytest.raises(_Killed):
        trainer.train(runs, progress=False, on_chunk=killed_at_10)
    ckpt.close()
    events = []
    res = fit(trainer, runs, tmp_path, progress=False, callbacks=[events.append], run_ids=["only"])
    assert [(e.start, e.step) for e in events] == [(10, 15), (15, 20)] and events[0].group == tmp_path.name
    assert events[0].run_ids == ("only",) and events[0].train_loss.shape == (1,)   # the second run: padding
    np.testing.assert_array_equal(events[-1].evals["markov"]["loss"], res.history["markov"]["loss"][:1, -1])


def test_study_flags_reach_the_sweeps_a_study_starts(tmp_path):
    got = []
    study = types.SimpleNamespace(NAME="fake", PRESETS={"smoke": None}, summarize=lambda out, tables: None,
                                  figures=lambda tables: [],
                                  run=lambda P, out, progress: run_sweep(_specs()[:1], out, progress=False))
    assert run_study(study, "smoke", tmp_path, progress=False, callbacks=[got.append]) == []
    assert [e.step for e in got] == [5, 10, 15, 20] and active_callbacks() == ()
    with pytest.raises(ZeroDivisionError):
        with sweep_callbacks([got.append]):
            1 / 0
    assert active_callbacks() == ()   # nothing outlives the block, an exception included


# -- TensorBoard -----------------------------------------------------------------------------

def _scalars_from_records(logdir) -> dict:
    """tag -> [(step, value)] parsed from the TFRecord framing with tensorboardX's protobuf."""
    from tensorboardX.proto import event_pb2
    out = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])   # length, its crc, the record, its crc
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def _scalars(logdir) -> dict:
    """tag -> [(step, value)], with TensorBoard's own reader where it is installed."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return _scalars_from_records(logdir)
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(s.step, s.value) for s in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_logger_writes_every_row_as_a_scalar_at_its_step(swept, tmp_path):
    require("tensorboardX")
    out, events = swept
    with TensorBoardLogger(tmp_path / "tb") as logger:
        for e in events:
            logger(e)
    scalars = _scalars(tmp_path / "tb")
    assert scalars == _scalars_from_records(tmp_path / "tb")   # both readers agree
    want = {}
    for (run, step, task, metric), value in sorted(_rows_by_key(out).items(), key=lambda kv: kv[0][1]):
        tag = f"{run}/train_loss" if task == "train" else f"{run}/{task}/{metric}"
        want.setdefault(tag, []).append((step, value))
    assert sorted(scalars) == sorted(want) and "s1/markov/acc" in scalars and "s0/train_loss" in scalars
    for tag, points in want.items():
        assert [s for s, _ in scalars[tag]] == [s for s, _ in points], tag
        np.testing.assert_array_equal([v for _, v in scalars[tag]], np.float32([v for _, v in points]))


def test_tensorboard_logger_without_tensorboardx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)   # import fails as if not installed
    with pytest.raises(ImportError, match=r"toymodels\[tensorboard\]"):
        TensorBoardLogger("unused")
