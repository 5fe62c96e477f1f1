"""A decompiler's data: compiled RASP nets' weights in, their programs out.

  tokens.py    program_tokens / parse_program: fountain programs as token sequences
  weights.py   weight_tokens: a net's weights as fixed-width vectors (Layout)
  evaluate.py  greedy_decode, exact_match, functionally_equivalent, score, decoder_report,
               io_table / is_degenerate (a program's input/output table; output set by length)
  retrieval.py nearest_programs: the nearest-training-program baseline

The ``decompile`` task (weight tokens in, program tokens out) is ``toymodels.tasks.decompile``.
"""

from toymodels.decompile.evaluate import (
    decoder_report,
    exact_match,
    functionally_equivalent,
    greedy_decode,
    score,
)
from toymodels.decompile.tokens import (
    VOCAB,
    format_program,
    parse_program,
    program_tokens,
)
from toymodels.decompile.weights import Layout, weight_tokens

__all__ = ["VOCAB", "Layout", "decoder_report", "exact_match", "format_program",
           "functionally_equivalent", "greedy_decode", "parse_program", "program_tokens",
           "score", "weight_tokens"]
