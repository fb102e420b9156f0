"""Converters by op family; importing this package registers them all (see `onnx/registry.py`)."""
from . import linalg, math, nn, reduce, tensor  # noqa: F401
