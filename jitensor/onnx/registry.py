"""The ONNX frontend's table: op type -> converter, one version per opset where the op changed.

A converter is a plain function `(ctx, *inputs) -> value | tuple of values`. Inputs are numpy
arrays when they are known at compile time (initializers, constants, shape arithmetic) and traced
arrays otherwise; a converter writes numpy code, so the first kind folds to a constant on the spot
and the second becomes graph nodes, and ONNX graphs land in the same graph IR as `@jit` functions.
An omitted optional input arrives as None.

    @converter("LeakyRelu")
    def leaky_relu(ctx, x):
        return np.where(x >= 0, x, x * ctx.attr("alpha", 0.01))

`@converter("Op", since=13)` registers the version used from opset 13 on, until a later `since`
(the pattern of per-opset `_impl_vN` methods, one function each). Converters live in `ops/` by
family; adding an op means one entry there plus a conformance case that passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import OnnxError

CONVERTERS: dict[tuple[str, str], dict[int, Callable]] = {}  # (domain, op type) -> {since opset: converter}

_REQUIRED = object()


def converter(*op_types: str, since: int = 1, domain: str = ""):
    def register(fn):
        for op in op_types:
            CONVERTERS.setdefault((domain, op), {})[since] = fn
        return fn
    return register


def lookup(op_type: str, opset: int, domain: str = "") -> Callable | None:
    """The converter for `op_type` at this opset: the one with the highest `since` not above it."""
    versions = CONVERTERS.get(("" if domain == "ai.onnx" else domain, op_type))
    if not versions:
        return None
    usable = [v for v in versions if v <= opset]
    return versions[max(usable)] if usable else None


def supported_ops(domain: str = "") -> list[str]:
    return sorted(op for d, op in CONVERTERS if d == domain)


@dataclass(frozen=True)
class NodeContext:
    """What a converter knows about its node: attributes (decoded), opset and name for messages."""
    op_type: str
    name: str
    opset: int
    attrs: dict
    n_outputs: int

    def attr(self, name: str, default=_REQUIRED):
        if name in self.attrs:
            return self.attrs[name]
        if default is _REQUIRED:
            raise self.error(f"attribute '{name}' is required")
        return default

    def error(self, msg: str) -> OnnxError:
        return OnnxError(f"ONNX node '{self.name}' ({self.op_type}): {msg}")

    def unsupported(self, what: str) -> OnnxError:
        return self.error(f"{what} is not supported")

    def constant(self, value, what: str) -> np.ndarray:
        """`value` as a numpy array known at compile time (a shape, axes, pads...), or a clear error."""
        if value is None or isinstance(value, (np.ndarray, np.generic, int, float, list, tuple)):
            return np.asarray(value)
        raise self.error(f"input '{what}' is computed from the model's inputs at run time; jitensor needs it "
                         "known at compile time (an initializer, a Constant, or arithmetic on shapes)")

    def ints(self, value, what: str) -> list[int]:
        return [int(v) for v in self.constant(value, what).reshape(-1)]
