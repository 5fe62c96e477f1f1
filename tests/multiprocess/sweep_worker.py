"""One process of a multi-process sweep on CPU, launched by tests/toymodels/test_sharding.py.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python sweep_worker.py OUT PROCESS_ID 2 PORT

joins a 2-process job (coordinator localhost:PORT, gloo collectives), trains SPECS with the
code path of ``--distributed`` (``run_sweep``: runs padded and sharded over every process's
devices, process 0 writes), deletes one run's records and reruns (it is rewritten from the
group's final checkpoint, restored by both processes), and writes the ChunkEvents its
callback got to OUT/events_<PROCESS_ID>.json. With NUM_PROCESSES 1 it does the same alone
(the reference). Not a test module: pytest never collects it.
"""

import json
import shutil
import sys
from pathlib import Path

import jax

from toymodels.model import TransformerConfig
from toymodels.runs import sync_processes
from toymodels.runspec import RunSpec
from toymodels.sweep import run_sweep
from toymodels.tasks import make_task
from toymodels.trainconfig import TrainConfig

M = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
TASKS = (("markov", make_task("markov", vocab_size=8, length=8)),)
# 3 runs on 4 devices: one padding run, on process 1's second device
SPECS = [RunSpec(f"r{i}", M, TrainConfig(steps=20, batch_size=8, n_evals=2, chunk_steps=10, seed=i,
                                         lr=1e-3 * (1 + i)), TASKS) for i in range(3)]


def _jsonable(event) -> dict:
    return {"group": event.group, "run_ids": list(event.run_ids), "start": event.start, "step": event.step,
            "train_loss": event.train_loss.tolist(),
            "evals": {t: {m: v.tolist() for m, v in ms.items()} for t, ms in event.evals.items()},
            "start_evals": {t: {m: v.tolist() for m, v in ms.items()} for t, ms in event.start_evals.items()}}


def main(out: str, process_id: int, num_processes: int, port: int) -> None:
    if num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")   # CPU collectives across processes
        jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=60,
                                   heartbeat_timeout_seconds=20, shutdown_timeout_seconds=20)
    assert jax.process_count() == num_processes and jax.device_count() == 4, (jax.process_count(), jax.devices())
    results = Path(out) / "results"
    events = []
    run_sweep(SPECS, results, progress=False, checkpoint_every_s=0, callbacks=[events.append])
    if process_id == 0:
        shutil.rmtree(results / "runs" / SPECS[0].run_id)
    sync_processes("sweep_worker.deleted")
    run_sweep(SPECS, results, progress=False, checkpoint_every_s=0)   # "resuming from step 20"
    (Path(out) / f"events_{process_id}.json").write_text(json.dumps([_jsonable(e) for e in events]))
    print(f"process {process_id}: done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
