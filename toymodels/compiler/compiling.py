"""``compile_program``: RASP program -> ``CompiledModel`` holding a toymodels Transformer.

    from toymodels.rasp import rasp, library
    from toymodels.compiler import compile_program
    model = compile_program(library.make_reverse(rasp.tokens), {"a", "b", "c"}, max_seq_len=5)
    model.run(["BOS", "a", "b", "c"])   # ['c', 'b', 'a']
"""

from __future__ import annotations

import math

import numpy as np

from toymodels import hooks
from toymodels.compiler.allocate import Layer, allocate_layers
from toymodels.compiler.assemble import assemble_weights
from toymodels.compiler.blocks import Plan, build_blocks
from toymodels.compiler.graph import CompileError, extract_graph
from toymodels.compiler.valuesets import infer_value_sets, sorted_values
from toymodels.config import replace
from toymodels.model import Transformer
from toymodels.params import build_model, model_params, param_shapes
from toymodels.rasp import rasp
from toymodels.rasp.rasp import RASPError


def compile_program(program: rasp.SOp, vocab, max_seq_len: int, bos: str = "BOS", *,
                    softmax_coldness: float = 100.0) -> CompiledModel:
    """Compiles ``program`` for inputs ``[bos, x_1, ..., x_n]``, x_i in ``vocab``, n <= max_seq_len."""
    vocab = sorted_values(vocab)
    if not vocab or bos in vocab or max_seq_len < 1:
        raise CompileError(f"need a non-empty vocab without the BOS token {bos!r} and "
                           f"max_seq_len >= 1 (got vocab={vocab}, max_seq_len={max_seq_len})")
    graph = extract_graph(program)                                          # 1. program graph
    values = infer_value_sets(graph, vocab, max_seq_len)                    # 2. value sets
    plan = build_blocks(graph, values, vocab, max_seq_len, bos, softmax_coldness)  # 3. blocks
    layers = allocate_layers(plan)                                          # 4. layers
    cfg, params = assemble_weights(plan, layers)                            # 5. weights
    return CompiledModel(cfg, params, plan, layers, graph.exprs, vocab, max_seq_len, bos)


def accepts(program: rasp.SOp, vocab, max_seq_len: int, bos: str = "BOS", *,
            softmax_coldness: float = 100.0) -> bool:
    """Whether the compiler's front end (graph, value sets, blocks) takes ``program``: the
    fountain's acceptance check (``fountain.generate(..., accept=accepts)``)."""
    try:
        graph = extract_graph(program)
        build_blocks(graph, infer_value_sets(graph, vocab, max_seq_len), vocab, max_seq_len,
                     bos, softmax_coldness)
    except (RASPError, ArithmeticError, TypeError, ValueError):
        return False
    return True


def forward(model: Transformer, ids) -> np.ndarray:
    """``model(ids)`` as numpy, through ``hooks.forward``'s one jitted function per config."""
    return np.asarray(hooks.forward(model, np.asarray(ids, np.int32))[0])


class CompiledModel:
    """A compiled RASP program: ``.model`` (a toymodels Transformer) plus what it means.

    ``residual_labels[i]`` names residual direction i; ``sops`` maps labels to the
    program's SOps; ``summary()`` lists what each head and MLP computes. ``run`` /
    ``run_batch`` decode outputs; ``subspace`` / ``readout`` / ``read`` locate and
    decode any SOp in cached activations (``toymodels.hooks.run_with_cache``);
    ``padded`` embeds the same function into a larger Transformer. ``cfg`` and
    ``params()`` are available without building ``model`` (built on first use).
    """

    def __init__(self, cfg, params: dict, plan: Plan, layers: list[Layer],
                 exprs: dict[str, rasp.SOp], vocab: list, max_seq_len: int, bos: str):
        self.cfg, self._params, self._model = cfg, params, None
        self.plan, self.layers = plan, layers
        self.vocab, self.max_seq_len, self.bos = vocab, max_seq_len, bos
        self.residual_labels = list(plan.residual_labels)
        self.input_ids = {bos: 0, **{v: i + 1 for i, v in enumerate(vocab)}}
        out = plan.readouts[plan.sink]
        self.output_values = None if out.numerical else list(out.values) + [None]
        self.sops = exprs   # label -> the program's RASP SOp with that label
        self._label_of = {id(e): label for label, e in exprs.items()}

    # ------------------------------------------------------------ sizes and structure

    @property
    def model(self) -> Transformer:
        """The toymodels Transformer (built from the compiled weights on first use)."""
        if self._model is None:
            self._model = build_model(self.cfg, self._params)
        return self._model

    @model.setter
    def model(self, model: Transformer):
        # init_std only draws a fresh model's weights: a trained twin of this program (same
        # architecture, its own init scale) computes in the same spaces and may replace it
        if replace(model.cfg, init_std=self.cfg.init_std) != self.cfg:
            raise ValueError("a replacement model must have the same config (init_std aside)")
        self._model = model

    def params(self) -> dict[str, np.ndarray]:
        """The weights by dotted path (of ``model``, if it was built and possibly edited)."""
        if self._model is None:
            return {k: np.asarray(v, np.float64) for k, v in self._params.items()}
        return model_params(self._model)

    @property
    def n_layers(self) -> int:
        return self.cfg.n_layers

    @property
    def d_model(self) -> int:
        return self.cfg.d_model

    @property
    def numerical_output(self) -> bool:
        return self.output_values is None

    def summary(self) -> str:
        """Which SOp each head and MLP block computes, layer by layer."""
        c = self.cfg
        lines = [(f"{self.n_layers} layers, d_model={self.d_model}, heads={c.n_heads}"
                  f" x d_head={c.head_dim}, d_mlp={c.mlp_dim}")]
        for i, layer in enumerate(self.layers):
            heads = ", ".join(h.node for h in layer.heads) or "-"
            mlps = ", ".join(f"{m.node} ({len(m.w_in)} units)" for m in layer.mlps) or "-"
            lines.append(f"layer {i}: attention [{heads}]  mlp [{mlps}]")
        return "\n".join(lines)

    # ------------------------------------------------------------ running

    def encode(self, seqs) -> np.ndarray:
        """Token ids (B, T) for equal-length sequences that start with BOS."""
        seqs = [list(s) for s in seqs]
        if len({len(s) for s in seqs}) > 1:
            raise ValueError("encode needs sequences of equal length; group them by length")
        for s in seqs:
            if not s or s[0] != self.bos:
                raise ValueError(f"every input must start with the BOS token {self.bos!r}: {s}")
            if len(s) - 1 > self.max_seq_len:
                raise ValueError(f"input of length {len(s) - 1} > max_seq_len={self.max_seq_len}")
            bad = [x for x in s[1:] if x not in self.input_ids or x == self.bos]
            if bad:
                raise ValueError(f"tokens {bad} are not in the vocabulary {self.vocab}")
        return np.array([[self.input_ids[x] for x in s] for s in seqs], np.int32).reshape(
            len(seqs), -1)

    def decode(self, outputs: np.ndarray) -> list[list]:
        """Model outputs (B, T, V or 1) -> values for the positions after BOS."""
        outputs = np.asarray(outputs)[:, 1:]
        if self.numerical_output:
            return outputs[..., 0].astype(float).tolist()
        ids = outputs[..., : len(self.output_values)].argmax(-1)
        return [[self.output_values[i] for i in row] for row in ids]

    def run_batch(self, seqs) -> list[list]:
        """Decoded outputs for equal-length inputs ``[BOS, x_1, ..., x_n]`` (BOS excluded)."""
        return self.decode(forward(self.model, self.encode(seqs)))

    def run(self, seq) -> list:
        """Decoded output for one input ``[BOS, x_1, ..., x_n]`` (n values; BOS excluded)."""
        return self.run_batch([seq])[0]

    # ------------------------------------------------------------ reading SOps

    def _label(self, sop) -> str:
        label = self._label_of.get(id(sop)) if isinstance(sop, rasp.RASPExpr) else sop
        if label not in self.plan.impl:
            raise KeyError(f"{sop!r} is not an SOp of this program; known: {sorted(self.plan.impl)}")
        if self.plan.impl[label] == "fused":
            raise KeyError(f"{label!r} was fused into the MLP of its only consumer; it has no code "
                           "in the residual stream")
        return label

    def readout(self, sop) -> tuple[np.ndarray, list | None]:
        """(R, values): residual @ R (D, k) is the SOp's one-hot code over ``values``
        (categorical) or its value (numerical, k = 1, values None)."""
        r = self.plan.readouts[self._label(sop)]
        index = {lab: i for i, lab in enumerate(self.residual_labels)}
        mat = np.zeros((self.d_model, len(r.lins)))
        for j, lin in enumerate(r.lins):
            for lab, coef in lin.items():
                mat[index[lab], j] = coef
        return mat, (None if r.numerical else list(r.values))

    def subspace(self, sop) -> list[int]:
        """Residual indices holding this SOp (materialized SOps only; see ``readout``)."""
        label = self._label(sop)
        impl = self.plan.impl[label]
        if impl == "virtual":
            r = self.plan.readouts[label]
            raise KeyError(f"{label!r} is virtual: a linear function of {r.labels}, with no "
                           "directions of its own; use readout() or read()")
        labels = set(self.plan.readouts[label].labels)
        return [i for i, lab in enumerate(self.residual_labels) if lab in labels]

    def read(self, sop, resid) -> list[list]:
        """Decodes an SOp from residual activations (B, T, D), at every position."""
        mat, values = self.readout(sop)
        codes = np.asarray(resid, np.float64) @ mat
        if values is None:
            return codes[..., 0].tolist()
        if not values:
            return np.full(codes.shape[:2], None).tolist()
        best = codes.argmax(-1)
        top = np.take_along_axis(codes, best[..., None], -1)[..., 0]
        return [[values[b] if t > 0.5 else None for b, t in zip(br, tr)]
                for br, tr in zip(best, top)]

    # ------------------------------------------------------------ padding

    def padded(self, *, n_layers=None, d_model=None, n_heads=None, d_head=None, d_mlp=None,
               vocab_size=None, max_seq_len=None) -> CompiledModel:
        """The same function in a larger Transformer (zero weights; extra residual
        directions are labelled ``pad:i``), e.g. to run many programs through one
        shape. Sizes are TransformerConfig fields (``max_seq_len`` counts BOS); inputs
        are still limited to this program's ``max_seq_len``."""
        cfg = self.cfg
        sizes = {"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads,
                 "d_head": d_head or None, "d_mlp": d_mlp, "vocab_size": vocab_size,
                 "max_seq_len": max_seq_len}
        new = replace(cfg, **{k: max(v, getattr(cfg, k)) for k, v in sizes.items() if v is not None})
        if new.d_head == 0:
            new = replace(new, d_head=cfg.head_dim)
        params, shapes = {}, param_shapes(new)
        for path, src in self.params().items():
            arr = np.zeros(shapes[path])
            arr[tuple(slice(0, s) for s in src.shape)] = src
            if path.endswith("attn.W_QKV"):
                arr[:, 0] *= math.sqrt(new.head_dim / cfg.head_dim)
            params[path] = arr
        out = object.__new__(CompiledModel)
        out.__dict__.update(self.__dict__)
        out.cfg, out._params, out._model = new, params, None
        out.residual_labels = self.residual_labels + [
            f"pad:{i}" for i in range(new.d_model - cfg.d_model)]
        return out

