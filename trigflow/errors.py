"""Spine layer: the one exception type that the CLI turns into a one-line message and a non-zero exit."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (hls4ml, onnx and Keras raise long ones), ≤ 300 characters."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:300]


class TrigflowError(Exception):
    """A user-facing error: the message names the cause and the fix. Shown without a traceback."""

    exit_code = 2


class ThresholdFailed(TrigflowError):
    """A configured verification threshold was not met (the run itself completed)."""

    exit_code = 1


class Interrupted(TrigflowError):
    """Ctrl-C during work that keeps its finished parts (the message says where and how to resume)."""

    exit_code = 130
