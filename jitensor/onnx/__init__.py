"""ONNX models as jitensor functions.

    model = jitensor.onnx.compile("resnet50.onnx")      # a path, bytes or an onnx.ModelProto
    probs = model(data=x)                               # keyword (ONNX names) or positional; numpy in and out
    sub = jitensor.onnx.compile(m, inputs=["conv1_out"], outputs=["pool5"])

    enc = jitensor.onnx.load("encoder.onnx")
    @jitensor.jit
    def classify(img):
        return np.argmax(enc((img / 255 - MEAN) / STD), axis=-1)   # traced inline: fuses with both ends

Both return an `OnnxFunction`: called with arrays it runs a compiled program (compiled on the first call
per input shapes, cached in memory and on disk like any `@jit` function); called while another function
is traced it inlines the model's graph. `compile` checks inputs against the model's declared names,
dtypes and dimensions; `load` also, and differs only in taking no sub-graph arguments.
"""
from __future__ import annotations

import inspect
import keyword

import numpy as np

from ..errors import OnnxError
from .importer import OnnxGraph, ValueSpec, extract, read_model
from .registry import supported_ops

__all__ = ["compile", "load", "OnnxFunction", "ValueSpec", "supported_ops"]


def _ident(name: str, i: int) -> str:
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    if not s or s[0].isdigit() or keyword.iskeyword(s):
        s = f"in{i}_{s}"
    return s


class OnnxFunction:
    """An ONNX graph as a function of arrays (see the module docstring)."""

    def __init__(self, graph: OnnxGraph, *, cache: bool = True, tune=None):
        from ..api import jit
        self.graph = graph
        self.inputs: tuple[ValueSpec, ...] = graph.inputs
        self.outputs: tuple[ValueSpec, ...] = graph.outputs
        self.sha256 = graph.sha256
        names, seen = [], set()
        for i, spec in enumerate(self.inputs):
            n = _ident(spec.name, i)
            while n in seen:
                n += "_"
            seen.add(n)
            names.append(n)
        single = len(self.outputs) == 1
        run = graph.run

        def fn(*xs):
            out = run(*xs)
            return out[0] if single else out
        fn.__signature__ = inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_ONLY) for n in names])
        fn.__name__ = fn.__qualname__ = f"onnx_{_ident(graph.name, 0)}"
        fn.__module__ = "jitensor.onnx"
        self._fn = fn
        self._jit = jit(fn, cache=cache, tune=tune)
        self._index = {spec.name: i for i, spec in enumerate(self.inputs)}

    def __repr__(self):
        return (f"<jitensor.onnx function {self.graph.name}({', '.join(map(str, self.inputs))}) -> "
                f"{', '.join(map(str, self.outputs))}>")

    def _bind(self, args, kwargs) -> list:
        if len(args) > len(self.inputs):
            raise OnnxError(f"{self.graph.name}: {len(args)} inputs given, the model takes {len(self.inputs)} "
                            f"({', '.join(s.name for s in self.inputs)})")
        vals = list(args) + [None] * (len(self.inputs) - len(args))
        for k, v in kwargs.items():
            i = self._index.get(k)
            if i is None:
                raise OnnxError(f"{self.graph.name}: no input named '{k}' (inputs: "
                                f"{', '.join(s.name for s in self.inputs)})")
            if i < len(args):
                raise OnnxError(f"{self.graph.name}: input '{k}' given twice")
            vals[i] = v
        missing = [s.name for s, v in zip(self.inputs, vals) if v is None]
        if missing:
            raise OnnxError(f"{self.graph.name}: missing input{'s' * (len(missing) > 1)} {', '.join(missing)}")
        return vals

    def check_inputs(self, vals) -> list:
        """The values as arrays, each checked against its input's declared dtype and dimensions."""
        out = []
        for spec, v in zip(self.inputs, vals):
            if not isinstance(v, np.ndarray):
                v = np.asarray(v, dtype=spec.dtype) if isinstance(v, (int, float, bool, list, tuple)) \
                    else np.asarray(v)
            if spec.dtype is not None and v.dtype != spec.dtype or spec.shape is not None and (
                    v.ndim != len(spec.shape) or any(d is not None and d != s for d, s in zip(spec.shape, v.shape))):
                raise OnnxError(f"{self.graph.name}: input {spec} does not accept {v.dtype.name}"
                                f"[{','.join(map(str, v.shape))}]")
            out.append(v)
        return out

    def __call__(self, *args, **kwargs):
        from ..frontend.trace import Tracer
        vals = self._bind(args, kwargs)
        if any(isinstance(v, Tracer) for v in vals):  # inside another traced function: inline the graph
            return self._fn(*vals)
        return self._jit(*self.check_inputs(vals))

    def run(self, feeds: dict) -> dict:
        """onnxruntime's calling convention: a dict of named inputs in, a dict of named outputs out."""
        out = self(**feeds)
        if len(self.outputs) == 1:
            out = (out,)
        return {spec.name: v for spec, v in zip(self.outputs, out)}

    def lower(self, *args, **kwargs):
        """Trace and compile for these inputs without running (the Compiled record: kernels, timings)."""
        return self._jit.lower(*self.check_inputs(self._bind(args, kwargs)))

    def cache_info(self):
        return self._jit.cache_info()


def load(model, *, check: bool = True, cache: bool = True, tune=None) -> OnnxFunction:
    """An ONNX model (path, bytes or ModelProto) as a function usable on arrays and inside `@jit`."""
    proto, sha, source = read_model(model, check=check)
    return OnnxFunction(OnnxGraph(proto, sha256=sha, source=source), cache=cache, tune=tune)


def compile(model, *, inputs=None, outputs=None, check: bool = True, cache: bool = True,
            tune=None) -> OnnxFunction:
    """`load`, optionally cut to the subgraph between the named tensors `inputs` and `outputs`. Compilation
    itself happens on the first call for each set of input shapes (or with `.lower(*arrays)`)."""
    proto, sha, source = read_model(model, check=check)
    if inputs is not None or outputs is not None:
        proto, source = extract(proto, source, inputs, outputs)
    return OnnxFunction(OnnxGraph(proto, sha256=sha, source=source), cache=cache, tune=tune)
