"""Ethos-N78 geometry facts shared by the capability table and legalize-ethos-n, so that a rule and
the checker cannot disagree: explicit SAME padding and the stride-2 max-pool forms the support
library runs."""

from __future__ import annotations

from npupass.ir.ops import same_padding


def explicit_padding(padding: str, h: int, w: int, kh: int, kw: int, sh: int, sw: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a TFLite SAME or VALID window op on an h x w input."""
    if padding != "SAME":
        return 0, 0, 0, 0
    top, bottom = same_padding(h, kh, sh)
    left, right = same_padding(w, kw, sw)
    return top, bottom, left, right


NO_PAD = (0, 0, 0, 0)
PAD_AFTER = (0, 1, 0, 1)
# The stride-2 max pools the support library runs (SupportQueries.cpp, IsPoolingSupported):
# pool size -> the paddings it accepts.
MAX_POOL_STRIDE_2 = {1: (NO_PAD,), 2: (NO_PAD, PAD_AFTER), 3: (NO_PAD, PAD_AFTER)}
MAX_POOL_3X3_MAX_WIDTH = 417


def max_pool_stride2_problem(k: int, pad: tuple[int, int, int, int], h: int, w: int) -> str | None:
    """Why Ethos-N does not run a k x k stride-2 max pool with padding `pad` on an h x w input."""
    if pad not in MAX_POOL_STRIDE_2.get(k, ()):
        return f"pool {k}x{k} with padding {list(pad)} is not 1x1, 2x2 or 3x3 with no padding or one after"
    even = h % 2 == 0 and w % 2 == 0
    odd = h % 2 == 1 and w % 2 == 1
    if k == 2 and pad == NO_PAD and not even:
        return f"2x2 unpadded needs an even input, not {h}x{w}"
    if k == 2 and pad == PAD_AFTER and not odd:
        return f"2x2 padded needs an odd input, not {h}x{w}"
    if k == 3 and w > MAX_POOL_3X3_MAX_WIDTH:
        return f"3x3 input width {w} > {MAX_POOL_3X3_MAX_WIDTH}"
    if k == 3 and pad == NO_PAD and not odd:
        return f"3x3 unpadded needs an odd input, not {h}x{w}"
    if k == 3 and pad == PAD_AFTER and not even:
        return f"3x3 padded needs an even input, not {h}x{w}"
    return None


def max_pool_stride1_problem(kh: int, kw: int, padding: str) -> str | None:
    """Why Ethos-N does not run a stride-1 max pool of this size (VALID <= 9, SAME <= 17)."""
    limit = 9 if padding == "VALID" else 17
    if kh > limit or kw > limit:
        return f"pool {kh}x{kw} {padding} is larger than {limit}x{limit}"
    return None
