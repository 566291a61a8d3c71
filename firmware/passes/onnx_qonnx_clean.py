"""Firmware layer: ONNX pass — the qonnx package's cleaning for hls4ml's ONNX frontend: ``cleanup_model``,
``ConvertToChannelsLastAndClean``, ``GemmToMatMul``, ``RemoveIdentityOps``, ``cleanup_model`` (run
``ExplicitPads`` before it). Needs ``trigflow[qonnx]``."""

from __future__ import annotations

from typing import Any

from trigflow.errors import TrigflowError
from trigflow.firmware.passes.onnx_graph import copy

__all__ = ["QonnxClean", "qonnx_version"]


def qonnx_version() -> str:
    from importlib.metadata import version

    return version("qonnx")


class QonnxClean:
    """``apply(proto) -> (proto, changed)``; ``changed``: the cleaned graph differs from the given one."""

    def apply(self, proto: Any) -> tuple[Any, bool]:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
        from qonnx.transformation.gemm_to_matmul import GemmToMatMul
        from qonnx.transformation.remove import RemoveIdentityOps
        from qonnx.util.cleanup import cleanup_model

        from trigflow.firmware.convert import first_line

        try:
            wrapper = cleanup_model(ModelWrapper(copy(proto)))
            wrapper = wrapper.transform(ConvertToChannelsLastAndClean())
            wrapper = wrapper.transform(GemmToMatMul())
            wrapper = wrapper.transform(RemoveIdentityOps())
            wrapper = cleanup_model(wrapper)
        except TrigflowError:
            raise
        except Exception as exc:
            raise TrigflowError(
                f"qonnx could not clean the model: {exc.__class__.__name__}: {first_line(exc)}"
            ) from None
        cleaned = wrapper.model
        if cleaned.SerializeToString(deterministic=True) == proto.SerializeToString(deterministic=True):
            return proto, False
        return cleaned, True
