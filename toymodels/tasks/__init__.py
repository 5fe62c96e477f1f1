"""Task registry: ``make_task("copy", seq_len=16)``; ``TASKS`` lists every registered name.

Importing this package imports every task module, which registers its tasks
(``register``, in base.py, so task modules import nothing from this package).
"""

from toymodels.tasks import (  # noqa: F401 -- importing a task module registers its tasks
    algorithmic,
    backdoor,
    decompile,
    languages,
    markov,
    myopia,
    parity,
    pool,
    prefix,
    rasp_io,
    text,
)
from toymodels.tasks.base import (
    SPLITS,
    TASKS,
    Batch,
    Task,
    Vocab,
    make_task,
    masked_mean,
    metrics,
    next_token_batch,
    register,
    token_losses,
)

# What a task defined outside the library needs (examples/my_task.py) is importable from here.
__all__ = ["Batch", "Task", "Vocab", "TASKS", "SPLITS", "register", "make_task", "metrics",
           "masked_mean", "next_token_batch", "token_losses"]
