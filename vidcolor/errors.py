"""Errors raised by vidcolor.

Each error subclasses a builtin as well, so callers that only know Python's
exceptions (``except ValueError``) still catch them; the CLI catches
``VidcolorError`` once and prints its message on one line (`one_line`, which
the batch job and the VapourSynth filter use too).
"""


class VidcolorError(Exception):
    """Base class of every error vidcolor raises on purpose."""


class InvalidInput(VidcolorError, ValueError):
    """The input file cannot be used (missing, not a video, no video stream...)."""


class UnsupportedFormat(InvalidInput):
    """The input decodes, but a codec or pixel format is not supported."""


class OutputError(VidcolorError, OSError):
    """The output cannot be written (exists, same as input, unwritable...)."""


class UnknownModel(VidcolorError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class WeightsError(VidcolorError, ValueError):
    """Weights that are missing or do not fit the model."""


class OutOfMemory(VidcolorError, MemoryError):
    """The device has no memory left even for one frame at a time."""


class Interrupted(VidcolorError, KeyboardInterrupt):
    """The job was stopped by a signal; partial output was removed."""


class TruncatedInput(InvalidInput):
    """Decoding stopped early; what was decoded before has been written."""


class DamagedInput(InvalidInput):
    """Frames in the middle could not be decoded (an error with --strict); every other frame was written."""


def one_line(exc: BaseException) -> str:
    """An error as one line for a person: vidcolor's own message as it is, any other with its type named."""
    text = str(exc) if isinstance(exc, VidcolorError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__
