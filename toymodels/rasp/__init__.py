"""RASP: a Tracr-compatible language, its interpreter, a program library, a program fountain
and a catalogue of named programs (library and fountain names).

    from toymodels.rasp import rasp, library, evaluate
    prog = library.make_frac_prevs(rasp.tokens == "x")
    evaluate(prog, list("xyx"))  # [1.0, 0.5, 0.666...]

Compile programs with ``toymodels.compiler.compile_program``.
"""

from toymodels.rasp import catalogue, fountain, library, rasp
from toymodels.rasp.interpreter import evaluate
from toymodels.rasp.rasp import (
    Aggregate,
    Comparison,
    Encoding,
    Full,
    LinearSequenceMap,
    Map,
    RASPError,
    RASPExpr,
    Select,
    Selector,
    SelectorAnd,
    SelectorNot,
    SelectorOr,
    SelectorWidth,
    SequenceMap,
    SOp,
    annotate,
    categorical,
    get_encoding,
    indices,
    is_categorical,
    is_numerical,
    length,
    numerical,
    tokens,
)

__all__ = [
    "Aggregate",
    "Comparison",
    "Encoding",
    "Full",
    "LinearSequenceMap",
    "Map",
    "RASPError",
    "RASPExpr",
    "SOp",
    "Select",
    "Selector",
    "SelectorAnd",
    "SelectorNot",
    "SelectorOr",
    "SelectorWidth",
    "SequenceMap",
    "annotate",
    "catalogue",
    "categorical",
    "evaluate",
    "fountain",
    "get_encoding",
    "indices",
    "is_categorical",
    "is_numerical",
    "length",
    "library",
    "numerical",
    "rasp",
    "tokens",
]
