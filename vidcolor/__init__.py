"""vidcolor: colorize grayscale film and video, frame-streaming, on GPU or CPU."""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    DamagedInput, InvalidInput, OutputError, TruncatedInput, UnknownModel, UnsupportedFormat, VidcolorError, WeightsError,
)

__all__ = ["DamagedInput", "InvalidInput", "OutputError", "TruncatedInput", "UnknownModel", "UnsupportedFormat",
           "VidcolorError", "WeightsError", "__version__"]
