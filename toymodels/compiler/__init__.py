"""RASP -> toymodels Transformer compiler (Tracr-compatible, exact where Tracr is not).

Stages, one module each, called in order by ``compile_program`` (compiling.py):
graph.py (program graph) -> valuesets.py (value-set inference) -> blocks.py
(per-node blocks: mlp.py, attention.py) -> allocate.py (layer allocation) ->
assemble.py (weights).
"""

from toymodels.compiler.compiling import CompiledModel, accepts, compile_program, forward
from toymodels.compiler.graph import CompileError

__all__ = ["CompileError", "CompiledModel", "accepts", "compile_program", "forward"]
