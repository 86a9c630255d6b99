"""What a request asks of the embedder, in one place for every protocol (OpenAI routes, V1,
V2): the ``return_*`` flags and the outputs they choose."""

from __future__ import annotations

from predictor.core.types import Output

FLAGS = {"return_dense": Output.DENSE, "return_sparse": Output.SPARSE,
         "return_colbert": Output.COLBERT}
DEFAULTS = {Output.DENSE: True, Output.SPARSE: False, Output.COLBERT: False}


def outputs_from_flags(dense: bool | None = None, sparse: bool | None = None,
                       colbert: bool | None = None) -> frozenset[Output]:
    """The outputs the ``return_*`` flags choose; a flag not given takes its default (SPEC:
    dense on, sparse and ColBERT off)."""
    given = {Output.DENSE: dense, Output.SPARSE: sparse, Output.COLBERT: colbert}
    return frozenset(o for o in Output if (DEFAULTS[o] if given[o] is None else given[o]))
