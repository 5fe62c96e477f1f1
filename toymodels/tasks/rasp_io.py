"""``rasp_io``: the input/output behaviour of a RASP program, to train a "twin" of its compiled net.

    task = make_task("rasp_io", program="reverse", length=5, n_eval=64)
    compiled = task.compile()          # the compiled net, same token ids as the task
    batch = task.sample(key, 32)       # inputs (B, 1 + length): BOS then tokens

Layout: ``inputs[:, 0]`` is BOS (id 0) and ``inputs[:, 1:]`` are the tokens, with the ids
of ``CompiledModel.encode`` (0 = BOS, then the sorted vocabulary). ``targets[:, t]`` is the
program's output at position t, NOT the next token: models of this task are meant to be
non-causal (``causal=False``), like the compiled nets. The BOS position is not scored.

Categorical programs: targets are class ids into ``output_vocab``, which is the compiled
net's output layout (its sorted output values, then ``None``), so a trained twin's logits
and the compiled net's logits mean the same thing column by column. ``vocab`` is the
input tokens padded with never-input ids up to the compiled net's ``vocab_size``, because
the model's embedding and unembedding share ``vocab_size`` and the output classes may
outnumber the input tokens.

Numerical programs (frac_prevs, pair_balance, mean, ...) are regression: ``loss`` is
"mse" and targets are (B, T, 1) float32, matching the compiled net's 1-d vector output
(``output_kind="vectors"``, ``d_output=1``).

Data: a table of inputs of exactly ``length`` tokens (all |vocab|^length of them when that
is at most 50,000, else 20,000 distinct ones drawn by ``data_seed``) with the reference
interpreter's outputs, built once on the host and cached. ``n_eval`` rows, chosen by
``data_seed``, form the eval split and never appear in training batches.

Program names (``resolve_program``): the names of ``toymodels.rasp.catalogue`` (a library
program such as ``"reverse"`` or ``"sort@8"``, or ``fountain:<seed>[:<n_ops>][@<n>]``), with
fountain programs accepted only if the compiler takes them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.compiler import CompileError, accepts, compile_program
from toymodels.config import ConfigError, check_choice, check_int
from toymodels.rasp import catalogue
from toymodels.rasp.catalogue import unknown_program as _unknown
from toymodels.rasp.interpreter import evaluate
from toymodels.rasp.rasp import RASPError, SOp
from toymodels.tasks.base import SPLITS, Batch, Task, Vocab, register

MAX_ENUMERATED = 50_000   # tables up to this many inputs hold every input
N_SAMPLED = 20_000        # otherwise this many distinct inputs


def resolve_program(name: str) -> tuple[SOp, tuple, int]:
    """(program, vocab, max_seq_len) for a program name (``toymodels.rasp.catalogue``), fountain
    programs accepted only if they compile. Cached: one name gives one SOp object."""
    if not isinstance(name, str):
        raise _unknown(name)
    return catalogue.resolve_program(name, accept=accepts)


@functools.lru_cache(maxsize=64)
def _compiled(name: str):
    """The compiled net shared by every task of this program (read-only: ``compile()`` gives
    callers their own)."""
    program, vocab, max_len = resolve_program(name)
    try:
        return compile_program(program, vocab, max_len)
    except CompileError as e:
        # The task exists to pair trained nets with compiled ones, and the compiled net
        # fixes the output layout, so a program that does not compile is rejected.
        raise ConfigError(f"program={name!r} does not compile: {e}") from None


def _n_rows(n_tokens: int, length: int) -> int:
    return n_tokens**length if n_tokens**length <= MAX_ENUMERATED else N_SAMPLED


def _token_strings(values) -> tuple[str, ...]:
    words = [str(v) for v in values]
    if len(set(words)) < len(words):  # 1 and "1" print alike
        words = [repr(v) for v in values]
    return tuple(words)


@functools.lru_cache(maxsize=16)
def _tables(name: str, length: int, n_eval: int, data_seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (token ids (R, L) int32, outputs (R, L): class ids int32 or values float32)."""
    program, _, _ = resolve_program(name)
    compiled = _compiled(name)
    values = list(compiled.vocab)   # input id i + 1 is values[i], as in CompiledModel.encode
    V, L = len(values), length
    rng = np.random.default_rng(data_seed)
    if V**L <= MAX_ENUMERATED:
        x_RL = np.array(list(itertools.product(range(1, V + 1), repeat=L)), np.int32).reshape(-1, L)
    else:
        # Distinct rows in order of first draw: deterministic in data_seed, no sorting bias.
        rows: dict[bytes, np.ndarray] = {}
        while len(rows) < N_SAMPLED:
            for row in rng.integers(1, V + 1, (N_SAMPLED, L), dtype=np.int32):
                rows.setdefault(row.tobytes(), row)
                if len(rows) == N_SAMPLED:
                    break
        x_RL = np.stack(list(rows.values()))
    if compiled.numerical_output:
        y_RL = np.zeros(x_RL.shape, np.float32)
    else:
        # dict lookup compares with ==, as the interpreter and compiler do (True == 1).
        class_of = {v: j for j, v in enumerate(compiled.output_values)}
        y_RL = np.zeros(x_RL.shape, np.int32)
    for r, row in enumerate(x_RL):
        xs = [values[i - 1] for i in row]
        try:
            out = evaluate(program, xs)
        except (RASPError, ArithmeticError, TypeError, ValueError) as e:
            raise ConfigError(f"program={name!r} fails on input {xs}: {e}") from None
        if compiled.numerical_output:
            y_RL[r] = out
        else:
            missing = [v for v in out if v not in class_of]
            if missing:
                raise RuntimeError(f"program {name!r} output {missing} on {xs} is outside the "
                                   f"compiled output values {compiled.output_values}")
            y_RL[r] = [class_of[v] for v in out]
    perm = rng.permutation(x_RL.shape[0])
    out = {"eval": np.sort(perm[:n_eval]), "train": np.sort(perm[n_eval:])}
    tables = {}
    for split, idx in out.items():
        x, y = x_RL[idx], y_RL[idx]
        x.setflags(write=False)
        y.setflags(write=False)
        tables[split] = (x, y)
    return tables


@register
@dataclasses.dataclass(frozen=True)
class RaspIOTask(Task):
    """Per-position outputs of a RASP program on BOS + ``length`` tokens (see module docstring)."""

    name = "rasp_io"
    next_token: ClassVar[bool] = False   # targets are outputs at each position, not shifted inputs

    program: str = "reverse"   # see resolve_program
    length: int = 5            # input tokens after BOS
    n_eval: int = 64           # held-out table rows
    data_seed: int = 0         # seeds the table sample (if any) and the split

    def __post_init__(self):
        if not isinstance(self.program, str):
            raise _unknown(self.program)
        check_int("length", self.length, 1)
        check_int("n_eval", self.n_eval, 1)
        check_int("data_seed", self.data_seed, 0)
        _, vocab, max_len = resolve_program(self.program)
        if self.length > max_len:
            raise ConfigError(
                f"length={self.length} exceeds the max_seq_len={max_len} program={self.program!r} "
                f"is built for: use length <= {max_len}, or program='{self.program.split('@')[0]}"
                f"@{self.length}'")
        n_rows = _n_rows(len(set(vocab)), self.length)
        if self.n_eval >= n_rows:
            raise ConfigError(f"n_eval={self.n_eval} leaves no training rows: the table of "
                              f"program={self.program!r} at length={self.length} has {n_rows} rows")
        _compiled(self.program)  # fail at construction, not at the first sample

    # ------------------------------------------------------------ layout

    @property
    def numerical(self) -> bool:
        return _compiled(self.program).numerical_output

    @property
    def loss(self) -> str:
        return "mse" if self.numerical else "xent"

    @property
    def d_output(self) -> int:
        return 1 if self.numerical else 0

    @property
    def seq_len(self) -> int:
        return self.length + 1

    @property
    def max_seq_len(self) -> int:
        """The longest input (after BOS) the program and its compiled net are built for."""
        return resolve_program(self.program)[2]

    @property
    def input_values(self) -> tuple:
        """RASP token values; token id i + 1 is ``input_values[i]`` (id 0 is BOS)."""
        return tuple(_compiled(self.program).vocab)

    @property
    def output_vocab(self) -> tuple | None:
        """Output values by class id (the compiled net's layout, ``None`` last); None if numerical."""
        values = _compiled(self.program).output_values
        return None if values is None else tuple(values)

    @property
    def vocab(self) -> Vocab:
        words = ("BOS",) + _token_strings(self.input_values)
        n_pad = _compiled(self.program).cfg.vocab_size - len(words)
        return Vocab(words + tuple(f"<unused:{i}>" for i in range(n_pad)))

    def compile(self):
        """A freshly compiled net of the program (a ``CompiledModel``; same token ids as the
        task, logits columns = ``output_vocab``). Fresh so that callers may edit its weights."""
        program, vocab, max_len = resolve_program(self.program)
        return compile_program(program, vocab, max_len)

    # ------------------------------------------------------------ data

    def table(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """(token ids (R, length) int32 without BOS, outputs (R, length)): class ids into
        ``output_vocab`` (int32) or values (float32) for numerical programs. Read-only."""
        check_choice("split", split, SPLITS)
        return _tables(self.program, self.length, self.n_eval, self.data_seed)[split]

    def values(self, split: str = "train") -> tuple[list[list], list[list]]:
        """The table of ``split`` as RASP values: (input sequences, output sequences)."""
        x_RL, y_RL = self.table(split)
        ins = np.asarray(self.input_values, dtype=object)[x_RL - 1].tolist()
        if self.numerical:
            return ins, y_RL.astype(float).tolist()
        return ins, np.asarray(self.output_vocab, dtype=object)[y_RL].tolist()

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        x_RL, y_RL = (jnp.asarray(a) for a in self.table(split))
        rows_B = jax.random.randint(key, (batch_size,), 0, x_RL.shape[0])
        return self._batch(x_RL[rows_B], y_RL[rows_B])

    def full_batch(self, split: str = "eval") -> Batch:
        """Every row of ``split`` once, in table order (exact accuracy, activation tables)."""
        return self._batch(*(jnp.asarray(a) for a in self.table(split)))

    def _batch(self, x_BL: jax.Array, y_BL: jax.Array) -> Batch:
        B, L = x_BL.shape
        inputs_BT = jnp.concatenate([jnp.zeros((B, 1), jnp.int32), x_BL.astype(jnp.int32)], axis=1)
        # The BOS target is a placeholder (masked out); 0 is a valid class id and value.
        targets_BT = jnp.concatenate([jnp.zeros((B, 1), y_BL.dtype), y_BL], axis=1)
        if self.numerical:
            targets_BT = targets_BT.astype(jnp.float32)[:, :, None]
        mask_T = jnp.concatenate([jnp.zeros((1,), jnp.float32), jnp.ones((L,), jnp.float32)])
        return Batch(inputs_BT, targets_BT, jnp.broadcast_to(mask_T[None, :], (B, L + 1)))
