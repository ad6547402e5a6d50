"""The targets `npupass compile --target` accepts, and which backend serves each."""

from __future__ import annotations

import re
from dataclasses import dataclass

from npupass.errors import NpupassError

ETHOS_U_MACS = {"u55": (32, 64, 128, 256), "u65": (256, 512), "u85": (128, 256, 512, 1024, 2048)}
ETHOS_N78_VARIANTS = (
    "1TOPS_2PLE_RATIO",
    "1TOPS_4PLE_RATIO",
    "2TOPS_2PLE_RATIO",
    "2TOPS_4PLE_RATIO",
    "4TOPS_2PLE_RATIO",
    "4TOPS_4PLE_RATIO",
    "8TOPS_2PLE_RATIO",
)
ETHOS_N78_DEFAULT_VARIANT = "4TOPS_4PLE_RATIO"


@dataclass(frozen=True)
class Target:
    """A compile target: `backend` names the package under npupass.backends that serves it.

    Ethos-U: `core` is Vela's architecture name (EthosU55) and `macs` the MACs per cycle.
    Ethos-N: `variant` is the N78 variant (4TOPS_4PLE_RATIO).
    """

    name: str
    backend: str
    core: str = ""
    macs: int = 0
    variant: str = ""


class UnknownTargetError(NpupassError):
    """The --target name is not one npupass compiles for."""


def target_names() -> list[str]:
    names = [f"ethos-{core}-{macs}" for core, all_macs in ETHOS_U_MACS.items() for macs in all_macs]
    names += ["ethos-n78"] + [f"ethos-n78-{v}" for v in ETHOS_N78_VARIANTS]
    return [*names, "xnnpack", "cortex-m"]


def parse_target(name: str) -> Target:
    """The Target for `name`; raises UnknownTargetError naming the valid targets."""
    text = name.strip().lower()
    if m := re.fullmatch(r"ethos-(u55|u65|u85)-(\d+)", text):
        core, macs = m.group(1), int(m.group(2))
        if macs in ETHOS_U_MACS[core]:
            return Target(text, "ethos_u", core=f"Ethos{core.upper()}", macs=macs)
        valid = ", ".join(f"ethos-{core}-{n}" for n in ETHOS_U_MACS[core])
        raise UnknownTargetError(f"unknown target '{name}': Ethos-{core.upper()} comes as {valid}")
    if m := re.fullmatch(r"ethos-n78(?:-(\w+))?", text):
        variant = (m.group(1) or ETHOS_N78_DEFAULT_VARIANT).upper()
        if variant in ETHOS_N78_VARIANTS:
            return Target(f"ethos-n78-{variant}", "ethos_n", variant=variant)
        raise UnknownTargetError(
            f"unknown Ethos-N78 variant '{m.group(1)}': choose one of {', '.join(ETHOS_N78_VARIANTS)}"
        )
    if text == "xnnpack":
        return Target("xnnpack", "xnnpack")
    if re.fullmatch(r"cortex-m(?:0\+?|3|4|7|33|35p|52|55|85)?", text):  # TFLM's kernels: the core changes nothing
        return Target("cortex-m", "cortex_m")
    raise UnknownTargetError(
        f"unknown target '{name}': choose ethos-u55-{{32,64,128,256}}, ethos-u65-{{256,512}}, "
        f"ethos-u85-{{128,256,512,1024,2048}}, ethos-n78[-VARIANT], xnnpack or cortex-m"
    )
