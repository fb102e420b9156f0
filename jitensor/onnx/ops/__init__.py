"""Converters by op family; importing this package registers them all (see `onnx/registry.py`)."""
from . import conv, linalg, math, nn, pool, reduce, resize, tensor  # noqa: F401
