"""Graph-rewriting passes and the PassManager that runs them (see manager.py for the contract)."""

from npupass.passes import fold_batch_norm, fold_fake_quant, fuse_activations  # noqa: F401 - registers them

# isort: split
from npupass.passes import encode_clusters, encode_sparsity  # noqa: F401 - registered after the core passes

# isort: split
from npupass.passes import cleanup, constant_fold, fuse_gelu  # noqa: F401 - rewrite-engine passes
from npupass.passes.manager import (
    PASSES,
    Decline,
    Pass,
    PassManager,
    PassResult,
    PassVerificationError,
    PipelineError,
    PipelineResult,
    available_passes,
    run_passes,
)
from npupass.passes.policy import CANONICALIZE, FOLD_FAKE_QUANT

# What a quantization-aware export needs (npupass.passes.policy decides per model and target).
DEFAULT_PIPELINE = ",".join([*CANONICALIZE, FOLD_FAKE_QUANT])

__all__ = [
    "DEFAULT_PIPELINE",
    "PASSES",
    "Decline",
    "Pass",
    "PassManager",
    "PassResult",
    "PassVerificationError",
    "PipelineError",
    "PipelineResult",
    "available_passes",
    "run_passes",
]
