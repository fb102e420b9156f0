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
import os

import numpy as np

from ..errors import OnnxError
from .importer import ModelSource, OnnxGraph, ValueSpec, extract, read_source
from .index import ModelIndex, signature
from .registry import supported_ops

__all__ = ["compile", "load", "OnnxFunction", "ValueSpec", "supported_ops"]


def _ident(name: str, i: int) -> str:
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    if not s or s[0].isdigit() or keyword.iskeyword(s):
        s = f"in{i}_{s}"
    return s


class OnnxFunction:
    """An ONNX model as a function of arrays (see the module docstring). Its graph is decoded on first use:
    a call whose program the model index (`index.py`) names is served from the disk cache without it."""

    def __init__(self, src: ModelSource, *, cut=(None, None), check: bool = True, cache: bool = True, tune=None):
        from ..api import jit
        self._src, self._cut, self._check = src, cut, check
        self.sha256 = src.sha256
        self._graph = None
        self._jit = None
        self._index = ModelIndex.of(src.sha256, cut) if cache and tune is None and not _cache_off() else None
        known = self._index.specs() if self._index is not None else None
        if known is None:  # not compiled before: decode now, so that a bad model fails here, not at its first call
            g = self.graph
            name, self.inputs, self.outputs = g.name, g.inputs, g.outputs
        else:
            name, ins, outs = known
            self.inputs = tuple(ValueSpec(*v) for v in ins)
            self.outputs = tuple(ValueSpec(*v) for v in outs)
        self.name = name
        names, seen = [], set()
        for i, spec in enumerate(self.inputs):
            n = _ident(spec.name, i)
            while n in seen:
                n += "_"
            seen.add(n)
            names.append(n)
        single = len(self.outputs) == 1

        def fn(*xs):
            out = self.graph.run(*xs)
            return out[0] if single else out
        fn.__signature__ = inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_ONLY) for n in names])
        fn.__name__ = fn.__qualname__ = f"onnx_{_ident(name, 0)}"
        fn.__module__ = "jitensor.onnx"
        self._fn = fn
        self._jit = jit(fn, cache=cache, tune=tune)
        self._single = single
        self._by_name = {spec.name: i for i, spec in enumerate(self.inputs)}

    @property
    def graph(self) -> OnnxGraph:
        """The decoded graph (parsed, checked, shape-inferred, optimized), made on first use."""
        if self._graph is None:
            proto = self._src.parse(self._check)
            source = self._src.source
            if self._cut != (None, None):
                proto, source = extract(proto, source, *self._cut)
            self._graph = OnnxGraph(proto, sha256=self.sha256, source=source)
        return self._graph

    def __repr__(self):
        return (f"<jitensor.onnx function {self.name}({', '.join(map(str, self.inputs))}) -> "
                f"{', '.join(map(str, self.outputs))}>")

    def _bind(self, args, kwargs) -> list:
        if len(args) > len(self.inputs):
            raise OnnxError(f"{self.name}: {len(args)} inputs given, the model takes {len(self.inputs)} "
                            f"({', '.join(s.name for s in self.inputs)})")
        vals = list(args) + [None] * (len(self.inputs) - len(args))
        for k, v in kwargs.items():
            i = self._by_name.get(k)
            if i is None:
                raise OnnxError(f"{self.name}: no input named '{k}' (inputs: "
                                f"{', '.join(s.name for s in self.inputs)})")
            if i < len(args):
                raise OnnxError(f"{self.name}: input '{k}' given twice")
            vals[i] = v
        missing = [s.name for s, v in zip(self.inputs, vals) if v is None]
        if missing:
            raise OnnxError(f"{self.name}: missing input{'s' * (len(missing) > 1)} {', '.join(missing)}")
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
                raise OnnxError(f"{self.name}: input {spec} does not accept {v.dtype.name}"
                                f"[{','.join(map(str, v.shape))}]")
            out.append(v)
        return out

    def __call__(self, *args, **kwargs):
        from ..frontend.trace import Tracer
        vals = self._bind(args, kwargs)
        if any(isinstance(v, Tracer) for v in vals):  # inside another traced function: inline the graph
            return self._fn(*vals)
        arrays = self.check_inputs(vals)
        key = tuple([(a.dtype, a.shape, a.strides) for a in arrays])  # the jitted function's key for them
        jf = self._jit
        if key not in jf._programs and self._index is not None and not self._from_index(key, arrays):
            out = jf(*arrays)
            self._record(key, arrays)
            return out
        return jf(*arrays)

    def _from_index(self, key, arrays) -> bool:
        """Serve a new signature with the program the model index names, if it is in the disk cache."""
        import time
        from ..api import finisher
        from ..compiler import load_stored
        t0 = time.perf_counter()
        stored = self._index.program(signature(arrays))
        if stored is None:
            return False
        prog_key, outs = stored
        prog = load_stored(prog_key, len(arrays), outs)
        if prog is None:
            return False
        tree = ("leaf", None) if self._single else ("tuple", (("leaf", None),) * len(self.outputs))
        self._jit._install(key, prog, finisher(tree, len(outs[0][0]) if outs else 0), time.perf_counter() - t0)
        return True

    def _record(self, key, arrays):
        c = self._jit._compiled.get(key)
        if c is not None and c.key:
            self._index.record(self.name, self.inputs, self.outputs, signature(arrays), c.key,
                               [(shape, dtype) for _, _, shape, dtype in c.program.manifest.outputs])

    def run(self, feeds: dict) -> dict:
        """onnxruntime's calling convention: a dict of named inputs in, a dict of named outputs out."""
        out = self(**feeds)
        if self._single:
            out = (out,)
        return {spec.name: v for spec, v in zip(self.outputs, out)}

    def lower(self, *args, **kwargs):
        """Trace and compile for these inputs without running (the Compiled record: kernels, timings)."""
        return self._jit.lower(*self.check_inputs(self._bind(args, kwargs)))

    def cache_info(self):
        return self._jit.cache_info()


def _cache_off() -> bool:
    return os.environ.get("JITENSOR_DISABLE_CACHE", "").strip().lower() not in ("", "0", "false", "no", "off")


def load(model, *, check: bool = True, cache: bool = True, tune=None) -> OnnxFunction:
    """An ONNX model (path, bytes or ModelProto) as a function usable on arrays and inside `@jit`."""
    return OnnxFunction(read_source(model), check=check, cache=cache, tune=tune)


def compile(model, *, inputs=None, outputs=None, check: bool = True, cache: bool = True,
            tune=None) -> OnnxFunction:
    """`load`, optionally cut to the subgraph between the named tensors `inputs` and `outputs`. Compilation
    itself happens on the first call for each set of input shapes (or with `.lower(*arrays)`)."""
    cut = (None if inputs is None else tuple(inputs), None if outputs is None else tuple(outputs))
    return OnnxFunction(read_source(model), cut=cut, check=check, cache=cache, tune=tune)
