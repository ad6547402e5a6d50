"""Op catalogue: the canonical TFLite builtin operator names plus the IR-only ops.

TFLite names come from the schema bindings, so a new LiteRT release brings its new ops along.
IR-only ops must be lowered by a pass before a backend writes the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ai_edge_litert import schema_py_generated as schema

if TYPE_CHECKING:
    from npupass.ir.graph import Op

BUILTIN_CODES: dict[str, int] = {
    name: code for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}
BUILTIN_NAMES: dict[int, str] = {code: name for name, code in BUILTIN_CODES.items()}

IR_ONLY_OPS: dict[str, str] = {
    "BATCH_NORM": "y = (x - mean) * gamma / sqrt(var + eps) + beta on the last axis; inputs x, gamma, beta, mean, var",
    "ERF": "y = erf(x) elementwise (from ONNX Erf); fuse-gelu and lower-erf remove it",
}

# Ops that must never be removed as dead code even when their outputs are unused. Ops that run
# another subgraph (WHILE, IF, CALL, STABLEHLO_CASE ...) are covered by has_side_effects.
SIDE_EFFECT_OPS = frozenset(
    {
        "ASSIGN_VARIABLE",
        "CALL_ONCE",
        "VAR_HANDLE",
        "READ_VARIABLE",
        "HASHTABLE_IMPORT",
        "CUSTOM",
        "STABLEHLO_CUSTOM_CALL",
        "STABLEHLO_RNG_BIT_GENERATOR",
    }
)


def is_known(op_type: str) -> bool:
    return op_type in BUILTIN_CODES or op_type in IR_ONLY_OPS


def subgraph_references(op: Op) -> list[tuple[str, int]]:
    """(option, subgraph index) for every subgraph `op` runs (WHILE, IF, CALL, CALL_ONCE, STABLEHLO_CASE ...)."""
    refs: list[tuple[str, int]] = []
    for key, value in op.options.items():
        if key.endswith(("subgraph_index", "subgraph_indices")) or key == "subgraph":
            refs.extend((key, index) for index in (value if isinstance(value, list) else [value]))
    return refs


def has_side_effects(op: Op) -> bool:
    """Whether removing `op` could change behaviour even when nothing reads its outputs."""
    return op.type in SIDE_EFFECT_OPS or bool(subgraph_references(op))


class Weighted(NamedTuple):
    """Where a weighted op keeps its operands: input slots, and the weight's output-channel axis."""

    input: int
    weight: int
    bias: int
    axis: int


WEIGHTED_OPS: dict[str, Weighted] = {
    "CONV_2D": Weighted(input=0, weight=1, bias=2, axis=0),  # W [O, H, W, I]
    "DEPTHWISE_CONV_2D": Weighted(input=0, weight=1, bias=2, axis=3),  # W [1, H, W, O]
    "FULLY_CONNECTED": Weighted(input=0, weight=1, bias=2, axis=0),  # W [O, I]
    "TRANSPOSE_CONV": Weighted(input=2, weight=1, bias=3, axis=0),  # (output_shape, W [O, H, W, I], x, b)
}

# Ops whose fused_activation_function is a clamp of the output (LiteRT 2.3): the RELU family can
# fuse into them. Others with the field refuse it (CONCATENATION, L2_NORMALIZATION) or apply it
# inside a recurrence (RNN, LSTM, SVDF).
CLAMPING_OPS = frozenset(
    {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "ADD", "SUB", "MUL", "DIV"}
    | {"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"}
)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite's SAME padding of one spatial dimension: (before, after), the odd pixel after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2
