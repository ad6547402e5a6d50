"""Graph-rewriting passes and the PassManager that runs them (see manager.py for the contract)."""

from npupass.passes import fold_batch_norm, fold_fake_quant, fuse_activations, legalize_ethos_n  # noqa: F401 - registers them

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

DEFAULT_PIPELINE = "fold-batch-norm,fuse-activations,fold-fake-quant"

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
