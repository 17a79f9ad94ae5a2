"""vidcolor: colorize grayscale film and video, frame-streaming, on GPU or CPU."""

import pathlib as _pathlib

__version__ = "0.1.0"

# In a source checkout the VapourSynth filter sits beside the package (plugins/); installed, it is the
# subpackage vidcolor.plugins (pyproject.toml maps it). Searching the checkout's root as well makes
# `vidcolor.plugins` importable the same way from inside a clone (`python -m pytest`, a script run there),
# where the clone's vidcolor/ comes first on sys.path and shadows the installed copy.
_checkout = _pathlib.Path(__file__).resolve().parent.parent
if (_checkout / "plugins" / "vs.py").is_file() and (_checkout / "pyproject.toml").is_file():
    __path__.append(str(_checkout))

from .errors import (  # noqa: E402
    DamagedInput, InvalidInput, OutputError, TruncatedInput, UnknownModel, UnsupportedFormat, VidcolorError, WeightsError,
)

__all__ = ["DamagedInput", "InvalidInput", "OutputError", "TruncatedInput", "UnknownModel", "UnsupportedFormat",
           "VidcolorError", "WeightsError", "__version__"]
