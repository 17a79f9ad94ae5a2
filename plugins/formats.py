"""VapourSynth formats and frame properties for the filter: what it accepts, writes and converts to."""

from __future__ import annotations

import vapoursynth as vs

from vidcolor.planes import MATRIX_CODES, MATRIX_OF_NAME, default_matrix

NAME = "vidcolor.colorize"
MODEL_PROP = "vidcolor_Model"
core = vs.core

# _Primaries / _Transfer given to frames that have none, by the matrix used.
DEFAULT_TAGS = {"bt709": (1, 1), "bt601": (6, 6), "bt2020": (9, 14)}


def vs_error(msg: str) -> vs.Error:
    return vs.Error(f"{NAME}: {msg}")


def vs_wording(msg: str) -> str:
    """The engine's CLI wording (``--weights FILE``) as this function's arguments."""
    for opt in ("weights", "device", "dtype", "model", "batch"):
        msg = msg.replace(f"--{opt} FILE", f"{opt}=FILE").replace(f"--{opt}", f"{opt}=")
    return msg.replace("= ", "=")


def full_range(props, fmt: vs.VideoFormat) -> bool:
    if fmt.sample_type == vs.FLOAT or fmt.color_family == vs.RGB:
        return True
    if "_Range" in props:
        return int(props["_Range"]) == int(vs.RANGE_FULL)
    return False  # VapourSynth's (zimg's) default for YUV and GRAY


def matrix_of(props, height: int) -> str:
    return MATRIX_CODES.get(int(props.get("_Matrix", 2)), default_matrix(height))


def set_props(fout: vs.VideoFrame, src_props, matrix: str, rgb: bool, full: bool, model: str,
               copy_props: bool) -> None:
    props = fout.props
    if copy_props:
        for k, v in src_props.items():
            props[k] = v
    if rgb:
        props["_Matrix"] = 0
        if "_ChromaLocation" in props:
            del props["_ChromaLocation"]
    elif int(src_props.get("_Matrix", 2)) not in MATRIX_CODES:
        props["_Matrix"] = MATRIX_OF_NAME[matrix]
    prim, trc = DEFAULT_TAGS[matrix]
    if int(src_props.get("_Primaries", 2)) == 2:
        props["_Primaries"] = prim
    if int(src_props.get("_Transfer", 2)) == 2:
        props["_Transfer"] = trc
    # R74+ reads and writes the old _ColorRange as an alias of _Range: setting _Range is enough.
    props["_Range"] = vs.RANGE_FULL if full else vs.RANGE_LIMITED
    props[MODEL_PROP] = model


def same_sample_type(family, fmt: vs.VideoFormat, ss=(0, 0)) -> vs.VideoFormat:
    return core.query_video_format(family, fmt.sample_type, fmt.bits_per_sample, *ss)


def resolve_output(fin: vs.VideoFormat, output) -> tuple[vs.VideoFormat, vs.VideoFormat | None]:
    """(native output format the filter writes, final format to convert to or None)."""
    if fin.color_family == vs.RGB:
        native = fin
    elif fin.color_family == vs.YUV:
        native = fin
    else:  # GRAY: RGB by default, YUV 4:4:4 (Y kept) when YUV is asked for
        native = same_sample_type(vs.RGB, fin)
    if output is None:
        return native, None
    if isinstance(output, str):
        want = output.lower()
        if want not in ("rgb", "yuv"):
            raise vs_error(f"output={output!r}: use None (the input's family), 'rgb', 'yuv' or a VapourSynth "
                         "format such as vs.YUV420P10")
        family = vs.RGB if want == "rgb" else vs.YUV
        if fin.color_family == vs.GRAY:
            native = same_sample_type(family, fin)
            return native, None
        if family == fin.color_family:
            return native, None
        return native, same_sample_type(family, fin)
    try:
        final = core.get_video_format(output)
    except (vs.Error, TypeError, ValueError):
        raise vs_error(f"output={output!r} is not a VapourSynth format; pass e.g. vs.YUV420P8, vs.RGB24, "
                     "'rgb' or 'yuv'") from None
    if final.color_family not in (vs.RGB, vs.YUV):
        raise vs_error(f"output={final.name}: choose a YUV or RGB format (a gray output would drop the colour)")
    if fin.color_family == vs.GRAY:
        native = same_sample_type(final.color_family, fin)
    return native, (None if final.id == native.id else final)


def check_input(clip) -> None:
    if not isinstance(clip, vs.VideoNode):
        raise vs_error(f"clip must be a VideoNode, not {type(clip).__name__}; pass e.g. core.bs.VideoSource('film.mkv')")
    fmt = clip.format
    if fmt is None or fmt.color_family == vs.UNDEFINED:
        raise vs_error("the clip has a variable format; convert it to one format first, e.g. "
                     "core.resize.Bicubic(clip, format=vs.YUV420P8)")
    if clip.width == 0 or clip.height == 0:
        raise vs_error("the clip has a variable frame size; give it one size first, e.g. "
                     "core.resize.Bicubic(clip, width=1920, height=1080)")
    if fmt.color_family not in (vs.GRAY, vs.YUV, vs.RGB):
        raise vs_error(f"{fmt.name}: unsupported colour family; convert to GRAY, YUV or RGB first")
    if fmt.sample_type == vs.INTEGER and not 8 <= fmt.bits_per_sample <= 16:
        raise vs_error(f"{fmt.name}: integer samples of {fmt.bits_per_sample} bits are not supported; "
                     "convert to 8..16 bits, e.g. core.resize.Point(clip, format=vs.YUV420P16)")
    if fmt.sample_type == vs.FLOAT and fmt.bits_per_sample not in (16, 32):
        raise vs_error(f"{fmt.name}: use half (16-bit) or single (32-bit) float samples")
    if fmt.color_family == vs.RGB and (fmt.subsampling_w or fmt.subsampling_h):
        raise vs_error(f"{fmt.name}: subsampled RGB is not supported")
    if clip.num_frames < 1:
        raise vs_error("the clip has no frames")


def convert(out: vs.VideoNode, final: vs.VideoFormat, src: vs.VideoNode) -> vs.VideoNode:
    """``core.resize`` to ``final``, reading the matrix and range the filter wrote in each frame."""
    if not (final.color_family == vs.YUV and out.format.color_family == vs.RGB):
        return out.resize.Bicubic(format=final.id)
    # RGB -> YUV needs a matrix: the one each frame's luma was read with (the source frame's).
    rng = vs.RANGE_LIMITED if final.sample_type == vs.INTEGER else vs.RANGE_FULL
    nodes = {name: out.resize.Bicubic(format=final.id, matrix=code, range=rng)
             for name, code in MATRIX_OF_NAME.items()}
    return core.std.FrameEval(nodes["bt709"], lambda n, f: nodes[matrix_of(f.props, src.height)], prop_src=src)
