"""Video I/O: decode, hand frames to the colorizer, encode; stills, the y4m pipe and film segments.

media (extensions, opening and probing an input) -> decode (stage 1) -> frames (planes and
their new chroma, stage 2) -> output (pixel format, header, encoder; stage 3); engine joins
the three stages in threads (stages); segments cuts a film and joins the parts; stills and
y4m are the other inputs.
"""
