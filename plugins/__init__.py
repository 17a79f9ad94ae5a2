"""vidcolor inside VapourSynth (installed as ``vidcolor.plugins``).

In a ``.vpy`` script::

    from vapoursynth import core
    from vidcolor.plugins.vs import colorize

    clip = core.bs.VideoSource("film.mkv")
    clip = colorize(clip)
    clip.set_output()

Runnable examples are in ``examples/`` beside this file.
"""


def __getattr__(name):  # `from vidcolor.plugins import colorize`, without importing VapourSynth before it is asked for
    if name == "colorize":
        from .vs import colorize

        return colorize
    raise AttributeError(name)
