"""Reading an ONNX model into a function of arrays.

`read_source` takes a path, bytes or a ModelProto; `ModelSource.parse` checks it (`onnx.checker`) and
infers shapes; `OnnxGraph` reports every unsupported op and type of the model in one error. `OnnxGraph` holds what a call
needs, decoded once per model: initializers as frozen numpy arrays (hashed once, see
`ConstValue.of`), the nodes with their converters and decoded attributes, and the input and output
specs. `OnnxGraph.run(*values)` walks the nodes in order; on traced arrays that is tracing, so an
ONNX model becomes the same graph IR as a `@jit` function, and fuses with the numpy code around it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from ..errors import JitensorError, OnnxError
from ..graph.ir import SUPPORTED_DTYPES
from .registry import NodeContext, lookup
from . import ops  # noqa: F401  (registers the converters)

MIN_OPSET = 7  # older models are refused; converters are written for opsets 13 and up, with older variants


@dataclass(frozen=True)
class ValueSpec:
    """A graph input or output: its name, dtype and shape (None for a symbolic dimension)."""
    name: str
    dtype: np.dtype | None
    shape: tuple | None

    def __str__(self):
        dims = "?" if self.shape is None else "[" + ",".join("?" if d is None else str(d) for d in self.shape) + "]"
        return f"{self.name}: {self.dtype.name if self.dtype is not None else '?'}{dims}"


class ModelSource:
    """A model's serialized bytes, their sha256 and a name for messages: what identifies a model, read
    without importing onnx (a first call served from the disk cache never needs to parse the model)."""

    def __init__(self, data: bytes, source: str, proto=None):
        self.data, self.source, self._proto = data, source, proto
        self.sha256 = hashlib.sha256(data).hexdigest()

    def parse(self, check: bool = True):
        """The ModelProto, checked (`onnx.checker`) and with shapes inferred."""
        import onnx
        from google.protobuf.message import DecodeError
        source, data = self.source, self.data
        try:
            proto = onnx.ModelProto()
            proto.ParseFromString(data)
        except (DecodeError, ValueError, RuntimeError) as e:
            raise OnnxError(f"{source} is not a valid ONNX model (truncated or not ONNX): {e}") from None
        if not proto.graph.node and not proto.graph.output:
            raise OnnxError(f"{source} is not a valid ONNX model: it has no graph (empty, truncated or not ONNX)")
        if check:
            try:
                onnx.checker.check_model(data)  # (bytes: the checker would serialize a proto again)
            except Exception as e:  # checker errors are several classes; the first line says what is wrong
                raise OnnxError(f"{source} fails the ONNX checker: {str(e).strip().splitlines()[0]}") from None
        try:
            return onnx.shape_inference.infer_shapes(data)
        except Exception as e:
            raise OnnxError(f"{source}: ONNX shape inference failed: {str(e).strip().splitlines()[0]}") from None


def read_source(model) -> ModelSource:
    """A path, bytes or an onnx.ModelProto as a ModelSource (a path is read, nothing is parsed)."""
    if isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
        try:
            with open(source, "rb") as f:
                return ModelSource(f.read(), source)
        except OSError as e:
            raise OnnxError(f"cannot read ONNX model {source}: {e.strerror}") from None
    if isinstance(model, (bytes, bytearray)):
        return ModelSource(bytes(model), "model")
    if type(model).__name__ == "ModelProto" and hasattr(model, "SerializeToString"):
        return ModelSource(model.SerializeToString(), "model")
    raise OnnxError(f"expected a path, bytes or an onnx.ModelProto, got {type(model).__name__}")


def read_model(model, *, check: bool = True):
    """A ModelProto from a path, bytes or a ModelProto, checked and with shapes inferred, the sha256 of its
    serialized form, and its name for messages."""
    src = read_source(model)
    return src.parse(check), src.sha256, src.source


def _np_dtype(elem_type: int):
    from onnx.helper import tensor_dtype_to_np_dtype
    try:
        return np.dtype(tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return None


def _type_name(elem_type: int) -> str:
    import onnx
    return onnx.TensorProto.DataType.Name(elem_type).lower()


def _spec(vi) -> ValueSpec:
    t = vi.type.tensor_type
    dt = _np_dtype(t.elem_type) if t.elem_type else None
    shape = None
    if t.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return ValueSpec(vi.name, dt, shape)


def decode_attrs(node) -> dict:
    from onnx import helper, numpy_helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        elif hasattr(v, "data_type") and hasattr(v, "dims"):  # a TensorProto
            v = numpy_helper.to_array(v)
        out[a.name] = v
    return out


def frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True, order="C")
    a.setflags(write=False)
    return a


class OnnxGraph:
    """An ONNX graph decoded for repeated runs (see the module docstring)."""

    def __init__(self, proto, *, sha256: str = "", source: str = "model", opset: int | None = None):
        from onnx import numpy_helper
        from .optimize import optimize
        proto = optimize(proto)  # BatchNormalization folded into the Conv before it
        self.proto, self.sha256, self.source = proto, sha256, source
        g = proto.graph
        if opset is None:
            opset = max([o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")], default=1)
        self.opset = opset
        self.name = g.name or os.path.splitext(os.path.basename(source))[0] or "model"
        inits = {}
        for t in g.initializer:
            try:
                inits[t.name] = frozen(numpy_helper.to_array(t))
            except Exception as e:
                raise OnnxError(f"{source}: initializer '{t.name}' cannot be read: {e}") from None
        self.initializers = inits
        self.inputs = tuple(_spec(v) for v in g.input if v.name not in inits)
        self.outputs = tuple(_spec(v) for v in g.output)
        self.value_info = {v.name: _spec(v) for v in list(g.value_info) + list(g.input) + list(g.output)}
        self.nodes = []
        missing, problems = {}, []
        if opset < MIN_OPSET:
            problems.append(f"opset {opset} is older than {MIN_OPSET}")
        for i, n in enumerate(g.node):
            name = n.name or f"{n.op_type}_{i}"
            conv = lookup(n.op_type, opset, n.domain)
            if conv is None:
                missing.setdefault(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}",
                                   []).append(name)
                continue
            ctx = NodeContext(n.op_type, name, opset, decode_attrs(n), len(n.output))
            self.nodes.append((conv, ctx, tuple(n.input), tuple(n.output)))
        for spec in self.inputs + self.outputs:
            if spec.dtype is not None and spec.dtype not in SUPPORTED_DTYPES:
                problems.append(f"'{spec.name}' has type {spec.dtype.name}")
        for name, a in inits.items():
            if a.dtype not in SUPPORTED_DTYPES:
                problems.append(f"initializer '{name}' has type {a.dtype.name}")
        if missing:
            listed = "; ".join(f"{op} (node{'s' if len(v) > 1 else ''} {', '.join(v[:5])}"
                               f"{f' and {len(v) - 5} more' if len(v) > 5 else ''})" for op, v in sorted(missing.items()))
            problems.insert(0, f"{sum(map(len, missing.values()))} node(s) use unsupported ops: {listed}")
        if problems:
            raise OnnxError(f"{source} (opset {opset}) cannot be compiled: " + "; ".join(problems)
                            + " (jitensor handles bool, integer, float32 and float64 tensors)" * any(
                                "type" in p for p in problems))

    def run(self, *values):
        """The graph's outputs (a tuple) for these input values, in `self.inputs` order."""
        env = dict(self.initializers)
        for spec, v in zip(self.inputs, values):
            env[spec.name] = v
        for conv, ctx, ins, outs in self.nodes:
            args = [env[n] if n else None for n in ins]
            while args and args[-1] is None:  # trailing omitted optionals take the converter's defaults
                args.pop()
            try:
                res = conv(ctx, *args)
            except OnnxError:
                raise
            except JitensorError as e:
                raise OnnxError(f"ONNX node '{ctx.name}' ({ctx.op_type}): {e.msg}") from e
            except (ValueError, TypeError, IndexError, ZeroDivisionError, KeyError) as e:
                raise OnnxError(f"ONNX node '{ctx.name}' ({ctx.op_type}): {type(e).__name__}: {e}") from e
            if not isinstance(res, tuple):
                res = (res,)
            for name, v in zip(outs, res):
                if name:
                    env[name] = v
        try:
            return tuple(env[o.name] for o in self.outputs)
        except KeyError as e:
            raise OnnxError(f"{self.source}: graph output {e} is not produced by any node") from None


def extract(proto, source: str, inputs=None, outputs=None):
    """The part of a model between named tensors (`onnx.utils.Extractor`) as a model of its own, and its
    description for messages."""
    import onnx.utils
    g = proto.graph
    inits = {t.name for t in g.initializer}
    graph_inputs = [v.name for v in g.input if v.name not in inits]
    graph_outputs = [v.name for v in g.output]
    known = set(graph_inputs) | {o for n in g.node for o in n.output}
    for n in list(inputs or []) + list(outputs or []):
        if n not in known:
            raise OnnxError(f"{source}: no tensor named '{n}' in the model")
    inputs, outputs = list(inputs or graph_inputs), list(outputs or graph_outputs)
    try:
        sub = onnx.utils.Extractor(proto).extract_model(inputs, outputs)
    except Exception as e:
        raise OnnxError(f"{source}: cannot extract the subgraph {inputs} -> {outputs}: {e}") from None
    return sub, f"{source}[{','.join(inputs)} -> {','.join(outputs)}]"
