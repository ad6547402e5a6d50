"""Short op names for people: TF/Keras tensor names are paths ("model/block_1_expand/Conv2D;model/...")
that wrap a table cell over many lines. The short name is the path's last meaningful component; the
full name stays in --json and in the HTML viewer's panel."""

from __future__ import annotations

import re

# A path component naming the TF op that made the tensor rather than the layer: Conv2D, Relu6, BiasAdd,
# FusedBatchNormV3, convolution, depthwise, add_1 ...
_GENERIC = re.compile(
    r"^([A-Z][A-Za-z0-9]*|convolution|depthwise|batchnorm|add|mul|sub|mean|truediv|(re)?shape|squeeze|concat|pad|"
    r"clip_by_value|transpose|BiasAdd|MatMul|kernel|bias|Identity|y|resource|pad|quantized)(_\d+)?(:\d+)?$"
)
MAX_SHORT = 40


def short_name(name: str, limit: int = MAX_SHORT) -> str:
    """`model/block_1_expand_relu/Relu6;...` -> `block_1_expand_relu` (at most `limit` characters)."""
    first = name.split(";", 1)[0].strip()
    # ONNX exporters name a tensor after the node that makes it: "/stem/stem.0/Conv_output_0"
    parts = [re.sub(r"_output_\d+$", "", p) for p in first.split("/") if p]
    if not parts:
        return _clip(name, limit)
    meaningful = [p for p in parts if not _GENERIC.match(p)]
    chosen = meaningful[-1] if meaningful else parts[-1]
    return _clip(chosen.split(":", 1)[0] or first, limit)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
