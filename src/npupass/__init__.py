"""npupass: graph-rewriting compiler passes for TFLite models and NPUs.

import npupass
result = npupass.compile("model.tflite", "ethos-u55-128")
result.report.npu_ops, result.report.cpu_ops, result.report.cycles, result.report.cpu_reasons
result.write("out/")
"""

__version__ = "0.1.0"

from npupass.api import ConvertResult, compile, convert, default_pipeline, load, place, targets, verify
from npupass.backends.base import Backend, CompileResult, Option, Report, Target, register
from npupass.ir.graph import Model
from npupass.verify.compare import Comparison, Tolerance

__all__ = [
    "Backend",
    "Comparison",
    "CompileResult",
    "ConvertResult",
    "Model",
    "Option",
    "Report",
    "Target",
    "Tolerance",
    "__version__",
    "compile",
    "convert",
    "default_pipeline",
    "load",
    "place",
    "register",
    "targets",
    "verify",
]
