"""Spine layer: the one exception type that the CLI turns into a one-line message and a non-zero exit."""


class TrigflowError(Exception):
    """A user-facing error: the message names the cause and the fix. Shown without a traceback."""

    exit_code = 2


class ThresholdFailed(TrigflowError):
    """A configured verification threshold was not met (the run itself completed)."""

    exit_code = 1
