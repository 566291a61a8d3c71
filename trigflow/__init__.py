"""trigflow: physics data → QKeras model → hls4ml firmware → bit-exact proof → report.

Spine layer: this package holds the run config, the pipeline, the CLI and the Python API (``trigflow.api``,
re-exported here: ``trigflow.run``, ``verify``, ``evaluate``, ``export_onnx``, ``estimate``); the stage
packages (``trigflow.models``, ``trigflow.quantize``, ``trigflow.firmware``, ``trigflow.proof``) are mapped in
from the top-level folders. Importing it imports no TensorFlow.
"""

from trigflow.api import (
    Backend,
    EstimateResult,
    EvaluateResult,
    ExportResult,
    IoType,
    Kind,
    RtlResult,
    RunResult,
    Strategy,
    VerifyResult,
    estimate,
    evaluate,
    export_onnx,
    rtl,
    run,
    verify,
)

__version__ = "0.1.0"
__all__ = [
    "Backend",
    "EstimateResult",
    "EvaluateResult",
    "ExportResult",
    "IoType",
    "Kind",
    "RtlResult",
    "RunResult",
    "Strategy",
    "VerifyResult",
    "__version__",
    "estimate",
    "evaluate",
    "export_onnx",
    "rtl",
    "run",
    "verify",
]

