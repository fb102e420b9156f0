"""Tracing unmodified numpy code: a `Tracer` stands in for each array argument.

numpy hands every ufunc call (`__array_ufunc__`) and most API functions (`__array_function__`)
to the Tracer, which records graph nodes instead of computing. Operators and ndarray methods
route through the same tables in `numpy_api.py` (`np.asarray`/`np.array`, which numpy gives no
hook, are replaced while tracing: `numpy_hooks.py`). Anything that needs a concrete value (`if`,
`bool()`, `int()`, `np.float32(x)`) raises `ConcretizationError` with the user's source line.

Python numbers (Python-scalar arguments, and Python operators applied to them and to literals) are
Tracers with `_py` set: Python's operator rules type them and they stay weak in numpy's promotion,
while a numpy function of one gives a strong numpy scalar, as in numpy.

Writes (`out[1:-1] = ...`, `x += 1`) are functional updates: the Tracer is a mutable handle whose
node is replaced. Only arrays the function itself created may be written; views remember the
version of their base so that reading a view after its base was written raises instead of
silently returning stale data.
"""
from __future__ import annotations

import linecache
import operator
import os
import sys

import numpy as np

from ..errors import ConcretizationError, TracingError, UnsupportedAttributeError, UnsupportedError
from ..graph.ir import Node

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__))


class Where(str):
    """A source location that formats itself only when shown ('file.py:12: y = x + b'): tracing records one
    per op, and reading source lines eagerly would dominate the cost of a trace."""
    __slots__ = ("file", "line")

    def __new__(cls, file, line):
        self = super().__new__(cls, "")
        self.file, self.line = file, line
        return self

    def __str__(self):
        code = linecache.getline(self.file, self.line).strip()
        return f"{self.file}:{self.line}" + (f": {code}" if code else "")

    __repr__ = __str__

    def __format__(self, spec):
        return format(str(self), spec)

    def __bool__(self):
        return True

    def __reduce__(self):  # (a traced graph goes to the background tuner's process)
        return Where, (self.file, self.line)


_internal: dict[str, bool] = {}


def _is_internal(filename: str) -> bool:
    r = _internal.get(filename)
    if r is None:
        fn = os.path.abspath(filename)
        r = _internal[filename] = (fn.startswith(_PKG_DIR) or fn.startswith(_NUMPY_DIR)
                                   or "<__array_function__" in filename)
    return r


def user_frame() -> Where | None:
    """The innermost frame outside jitensor and numpy: the user's line that made this op."""
    f = sys._getframe(1)
    while f is not None:
        code = f.f_code
        if not _is_internal(code.co_filename):
            return Where(code.co_filename, f.f_lineno)
        f = f.f_back
    return None


class Tracer:
    """A traced array: a handle on a graph node, with ndarray's interface."""
    __array_priority__ = 1000
    __slots__ = ("_node", "_owner", "_base", "_base_version", "_version", "_py", "_args", "_key", "_npscalar",
                 "__weakref__")

    def __init__(self, node: Node, *, owner: bool = True, base: "Tracer | None" = None, py: type | None = None,
                 args: tuple = ()):
        self._node = node
        self._owner = owner          # the function created this array (it may be written)
        self._base = base            # for views: the array this one views
        self._base_version = base._version if base is not None else 0
        self._version = 0
        # A Python scalar (bool, int or float): a Python-scalar argument, or Python operators applied to such
        # scalars and literals. Python's rules type it, and int/float are weak in numpy's promotion.
        self._py = py
        self._args = args            # for a Python scalar: the names of the arguments it was computed from
        self._key = None             # for a basic-slicing view of an owned array: its index into the base
        self._npscalar = False       # numpy would hold a numpy scalar here (a full reduction), not a 0-d array

    @property
    def _weak(self) -> bool:
        return self._py is int or self._py is float

    # -- node access with the staleness check
    @property
    def node(self) -> Node:
        b = self._base
        if b is not None and b._version != self._base_version:
            raise TracingError("this array is a view of an array that was modified after the view was taken; "
                               "jitensor traces writes functionally, so take the view after the write "
                               "(or .copy() it before)", where=user_frame())
        return self._node

    def _assign(self, node: Node, what: str):
        if not self._owner:
            why = ("it is an input argument (jitensor never modifies inputs)" if self._node.op == "input"
                   else "it is a view of another array")
            raise UnsupportedError(f"{what}: cannot write into this array because {why}; "
                                   "write into a copy instead (`out = x.copy(); out[...] = ...`)", where=user_frame())
        self._node = node
        self._version += 1

    # -- static metadata
    shape = property(lambda self: self.node.shape)
    dtype = property(lambda self: self.node.dtype)
    ndim = property(lambda self: self.node.ndim)
    size = property(lambda self: self.node.type.size)
    itemsize = property(lambda self: self.node.dtype.itemsize)
    nbytes = property(lambda self: self.node.type.size * self.node.dtype.itemsize)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def _what(self, array="array ") -> str:
        if self._py is not None:
            src = ", ".join(f"`{a}`" for a in self._args)
            return (f"Python {self._py.__name__}" +
                    (f" (argument {src})" if len(self._args) == 1 else f" (from arguments {src})" if src else ""))
        return f"{array}{self._node.type}"

    def __repr__(self):
        # print(x), f"{x}" while tracing: say what it is rather than fail (values exist only when compiled code runs)
        return (f"Traced {self._what('')} (jitensor: values are not known while tracing; "
                "return it or use jitensor.explain)")

    def __format__(self, spec):  # f"{x:.3f}": numbers' format specs do not apply to a value that is not known yet
        return repr(self)

    # -- concretization: Python needs a value the trace does not have
    def _concrete(self, what, hint=None):
        if self._args and hint is None:  # a Python number argument used where Python needs its value
            names = ", ".join(dict.fromkeys(f'"{a.split("[")[0]}"' for a in self._args))
            hint = ("jitensor traces Python number arguments as runtime values, so a size, index, range or "
                    "condition cannot depend on them. If it is a configuration value, make it part of the "
                    f"compiled signature: @jitensor.jit(static_argnames=({names},)).")
        hint = hint or ("Python control flow cannot depend on array data. Use np.where(cond, a, b) for a "
                        "data-dependent choice, or mark the argument static with "
                        "@jitensor.jit(static_argnames=(...)) if it is a configuration value.")
        raise ConcretizationError(f"{what} of a traced {self._what()}: its value is not known while "
                                  f"jitensor traces the function. {hint}", where=user_frame())

    def __bool__(self):
        self._concrete("bool()")

    def __int__(self):
        self._concrete("int()")

    def __float__(self):
        self._concrete("float()")

    def __index__(self):
        self._concrete("using as an index (__index__)")

    def __complex__(self):
        self._concrete("complex()")

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and not self.shape:  # np.float32(x): numpy scalar types have no hook to trace
            self._concrete(f"np.{np.dtype(dtype).name}(...)",
                           f"numpy's scalar types cannot be traced: write np.asarray(x, dtype=np.{np.dtype(dtype).name}) "
                           "instead, which gives the same value and dtype.")
        self._concrete("converting to a numpy array (np.asarray, np.array, or writing it into a numpy array)",
                       "Keep the computation in numpy operations on the traced values: build new arrays with "
                       "np.zeros_like(x) / np.concatenate / np.where, or write into a copy: out = x.copy(); "
                       "out[1:] = ...")

    def item(self, *a):
        self._concrete(".item()")

    def tolist(self):
        self._concrete(".tolist()")

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    __hash__ = None  # like ndarray: arrays are not hashable (and not usable as static args)

    # -- numpy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from . import numpy_api
        return numpy_api.apply_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from . import numpy_api
        return numpy_api.apply_function(func, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):  # numpy probes __array_struct__ etc.: absent, so it falls back to __array__
            raise AttributeError(name)
        from . import numpy_api
        m = numpy_api.METHODS.get(name)
        if m is None:
            raise UnsupportedAttributeError(f"ndarray attribute or method '.{name}' is not supported by jitensor",
                                            where=user_frame())
        return lambda *a, **k: m(self, *a, **k)

    @property
    def T(self):
        from . import numpy_api
        return numpy_api.transpose(self)

    @property
    def mT(self):
        from . import numpy_api
        return numpy_api.swapaxes(self, -1, -2)

    @property
    def flat(self):
        self._concrete(".flat")

    def __getitem__(self, key):
        from . import indexing
        return indexing.getitem(self, key)

    def __setitem__(self, key, value):
        from . import indexing
        indexing.setitem(self, key, value)


def _is_py(x) -> bool:
    """A Python number, or a traced one (a Python-scalar argument, or Python operators applied to those)."""
    if isinstance(x, Tracer):
        return x._py is not None
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def _op(ufunc_name, pyop, reflected=False):
    # Python operators between Python numbers follow Python's rules (r * 2 is a weak Python float); numpy's ufuncs
    # called on them give numpy scalars (np.exp(r) is a strong np.float64), so the two paths differ here
    uf = getattr(np, ufunc_name)

    def f(self, other):
        ins = (other, self) if reflected else (self, other)
        if self._py is not None and _is_py(other):
            from . import numpy_api
            return numpy_api.python_op(uf, pyop, ins)
        return uf(*ins)
    return f


def _iop(ufunc_name, pyop):
    uf = getattr(np, ufunc_name)

    def f(self, other):
        from . import numpy_api
        if self._py is not None:  # `r += 1` on a Python number rebinds the name, as `r = r + 1`
            return numpy_api.python_op(uf, pyop, (self, other)) if _is_py(other) else uf(self, other)
        res = uf(self, other)
        if res.dtype != self.dtype:  # numpy: in-place ops cast back with same_kind rules
            if not np.can_cast(res.dtype, self.dtype, "same_kind"):
                raise TypeError(f"Cannot cast ufunc '{ufunc_name}' output from {res.dtype!r} to {self.dtype!r} "
                                "with casting rule 'same_kind'")
            res = numpy_api.astype(res, self.dtype)
        if not self._owner and self._key is not None and self._base is not None and self._base._owner:
            # `out[1:] *= 3`: write through the view into its base, then see the base's new data
            self._base[self._key] = res
            self._node, self._base_version = res.node, self._base._version
            return self
        self._assign(res.node, f"in-place {ufunc_name}")
        return self
    return f


def _unary(ufunc_name, pyop):
    uf = getattr(np, ufunc_name)

    def f(self):
        if self._py is not None:
            from . import numpy_api
            return numpy_api.python_op(uf, pyop, (self,))
        return uf(self)
    return f


for _name, _uf in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "divide"),
                   ("floordiv", "floor_divide"), ("mod", "remainder"), ("pow", "power"), ("matmul", "matmul"),
                   ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor"),
                   ("lshift", "left_shift"), ("rshift", "right_shift")]:
    _pyop = getattr(operator, _name if _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
                                                 "lshift", "rshift", "xor") else _name + "_")
    setattr(Tracer, f"__{_name}__", _op(_uf, _pyop))
    setattr(Tracer, f"__r{_name}__", _op(_uf, _pyop, reflected=True))
    setattr(Tracer, f"__i{_name}__", _iop(_uf, _pyop))
for _name, _uf in [("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"),
                   ("eq", "equal"), ("ne", "not_equal")]:
    setattr(Tracer, f"__{_name}__", _op(_uf, getattr(operator, _name)))


def _pow(self, other):
    # numpy's operator fast path: bool_array ** 2 is np.square (int8), not np.power (int64); numpy's bool
    # scalars (a full reduction's result) have no such path
    if self._py is not None and _is_py(other):
        from . import numpy_api
        return numpy_api.python_op(np.power, operator.pow, (self, other))
    if type(other) is int and other == 2 and self.dtype == np.bool_ and not self._npscalar:
        return np.square(self)
    return np.power(self, other)


Tracer.__pow__ = _pow
Tracer.__neg__ = _unary("negative", operator.neg)
Tracer.__pos__ = _unary("positive", operator.pos)
Tracer.__abs__ = _unary("absolute", operator.abs)
Tracer.__invert__ = _unary("invert", operator.invert)
Tracer.__divmod__ = lambda self, o: (self // o, self % o)
Tracer.__rdivmod__ = lambda self, o: (o // self, o % self)
