"""Graph IR: a DAG of typed tensor operations with static shapes.

A `Node` is an immutable vertex: op name, input nodes, hashable attributes, and its result type
(shape + dtype). Nodes compare by identity (they are graph vertices); `Node.key()` gives the
structural identity used by CSE and the cache key. The op vocabulary and its shape/dtype rules
live in `graph/ops.py`.
"""
from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass, field

import numpy as np

# dtypes the compiler handles end to end (numpy's names)
SUPPORTED_DTYPES = frozenset(
    np.dtype(t) for t in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                          "uint32", "uint64", "float32", "float64"))


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __str__(self) -> str:
        return f"{self.dtype.name}[{','.join(map(str, self.shape))}]"


_FROZEN: dict = {}  # id(frozen array) -> (weakref to it, its ConstValue)


class ConstValue:
    """A numpy array held as a node attribute: hashable by content, printed briefly."""
    __slots__ = ("array", "_digest")

    def __init__(self, array: np.ndarray):
        a = np.array(array, copy=True, order="C")  # a private copy (ascontiguousarray would make 0-d 1-d)
        a.setflags(write=False)
        self.array = a
        self._digest = hashlib.sha256(a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()).hexdigest()

    @classmethod
    def of(cls, array: np.ndarray) -> "ConstValue":
        """The ConstValue of `array`, made once per frozen array: an array that owns its data, is C-ordered
        and read-only (a model's weights) cannot change, so it is neither copied nor hashed again on each
        trace (sha256 of ResNet-50's 100 MB of weights costs ~0.1 s)."""
        if not (type(array) is np.ndarray and array.base is None and not array.flags.writeable
                and array.flags.c_contiguous):
            return cls(array)
        hit = _FROZEN.get(id(array))
        if hit is not None and hit[0]() is array:
            return hit[1]
        cv = cls.__new__(cls)
        cv.array = array
        cv._digest = hashlib.sha256(array.dtype.str.encode() + str(array.shape).encode() + array.tobytes()).hexdigest()
        _FROZEN[id(array)] = (weakref.ref(array, lambda _, k=id(array), pop=_FROZEN.pop: pop(k, None)), cv)
        return cv

    def __eq__(self, other):
        return isinstance(other, ConstValue) and self._digest == other._digest

    def __hash__(self):
        return hash(self._digest)

    @property
    def digest(self) -> str:
        return self._digest

    def __repr__(self):
        a = self.array
        if a.size <= 4:
            return np.array2string(a.reshape(-1) if a.ndim else a, separator=",")
        return f"<{a.dtype.name}{list(a.shape)} {self._digest[:8]}>"


@dataclass(frozen=True, eq=False)
class Node:
    op: str
    inputs: tuple["Node", ...]
    attrs: tuple[tuple[str, object], ...]
    type: TensorType
    # where the user's code created this node ("file.py:12: y = x + b"), for error messages
    where: str | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> np.dtype:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return len(self.type.shape)

    def attr(self, name, default=None):
        for k, v in self.attrs:
            if k == name:
                return v
        return default

    def key(self, input_ids=None) -> tuple:
        ids = tuple(id(i) for i in self.inputs) if input_ids is None else input_ids
        return (self.op, ids, self.attrs, self.type.shape, self.type.dtype.str)


def make_attrs(**kw) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(kw.items()))


@dataclass(frozen=True)
class Graph:
    inputs: tuple[Node, ...]
    outputs: tuple[Node, ...]

    def toposort(self) -> list[Node]:
        order, seen = [], set()
        for out in self.outputs:
            stack = [(out, False)]
            while stack:
                n, done = stack.pop()
                if done:
                    order.append(n)
                    continue
                if id(n) in seen:
                    continue
                seen.add(id(n))
                stack.append((n, True))
                stack.extend((i, False) for i in reversed(n.inputs) if id(i) not in seen)
        return order

    def users(self) -> dict[int, list[Node]]:
        out: dict[int, list[Node]] = {}
        for n in self.toposort():
            for i in n.inputs:
                out.setdefault(id(i), []).append(n)
        return out

    def __str__(self) -> str:
        return format_graph(self)

    def fingerprint(self) -> str:
        """A canonical hash of the graph's structure, types and constants (independent of node ids)."""
        names: dict[int, int] = {}
        h = hashlib.sha256()
        for i, n in enumerate(self.inputs):
            names[id(n)] = i
        for n in self.toposort():
            if id(n) not in names:
                names[id(n)] = len(names)
            ins = tuple(names[id(i)] for i in n.inputs)
            attrs = tuple((k, v.digest if isinstance(v, ConstValue) else v) for k, v in n.attrs)
            h.update(repr((names[id(n)], n.op, ins, attrs, n.shape, n.dtype.str)).encode())
        h.update(repr(tuple(names[id(o)] for o in self.outputs)).encode())
        return h.hexdigest()


def format_graph(g: Graph, groups: dict[int, int] | None = None) -> str:
    """Text dump: one line per node, `%3 = add(%1, %2) : float32[4,8]`."""
    names: dict[int, str] = {}
    lines = []
    for i, n in enumerate(g.inputs):
        names[id(n)] = f"%arg{i}"
    lines.append("graph(" + ", ".join(f"{names[id(n)]}: {n.type}" for n in g.inputs) + ") {")
    k = 0
    for n in g.toposort():
        if n.op == "input":
            continue
        name = f"%{k}"
        k += 1
        names[id(n)] = name
        args = [names[id(i)] for i in n.inputs]
        args += [f"{a}={v!r}" for a, v in n.attrs]
        tag = f"  # group {groups[id(n)]}" if groups and id(n) in groups else ""
        lines.append(f"  {name} = {n.op}({', '.join(args)}) : {n.type}{tag}")
    lines.append("  return " + ", ".join(names[id(o)] for o in g.outputs))
    lines.append("}")
    return "\n".join(lines)
