"""NeRF: positional encodings, the field, cameras, volume rendering, shading, regularizers."""
