"""Video I/O: decode, hand frames to the colorizer, encode; stills, the y4m pipe and film segments."""
