"""Every user-facing failure of jitensor is a JitensorError.

Errors carry the op, the shapes/dtypes involved and, when known, the user's source line
(`where`), so that a message reads like "jitensor: cannot broadcast (3,4) with (5,) in np.add
at model.py:12: y = x + b".
"""
from __future__ import annotations


class JitensorError(Exception):
    """Base class of every error jitensor raises on purpose."""

    def __init__(self, msg: str, *, where: str | None = None):
        self.msg = msg
        self.where = str(where) if where is not None else None
        super().__init__(msg + (f"\n  at {self.where}" if where is not None else ""))


class TracingError(JitensorError):
    """The traced function did something that cannot be captured in a graph."""


class ConcretizationError(TracingError):
    """A traced value was used where Python needs a concrete value (if, bool(), int(), len of data...)."""


class UnsupportedError(TracingError):
    """A numpy function, method, argument or dtype that jitensor does not support (yet)."""


class UnsupportedAttributeError(UnsupportedError, AttributeError):
    """An ndarray attribute or method jitensor does not trace (also an AttributeError, so getattr/hasattr work)."""


class ShapeError(JitensorError, ValueError):
    """Shapes that cannot be broadcast, reshaped, concatenated or multiplied."""


class DTypeError(JitensorError, TypeError):
    """A dtype jitensor does not handle (object, complex, string...) or an invalid cast/promotion."""


class ArgumentError(JitensorError, TypeError):
    """Wrong number or kind of arguments to a jitted function, or an unhashable static argument."""


class IndexOutOfBoundsError(JitensorError, IndexError):
    """An index (a Python int at trace time, or array data at run time) outside its axis."""


class RuntimeCheckError(JitensorError, ValueError):
    """A check in compiled code failed on the data (e.g. an integer raised to a negative power)."""


class CompileError(JitensorError):
    """Code generation or LLVM compilation failed: always a jitensor bug, reported with the kernel."""


class OnnxError(JitensorError):
    """An ONNX model that cannot be read, checked or imported (malformed, truncated, unsupported ops or
    types, inputs that do not match the model), or a compiled model artifact that is damaged or foreign."""


class CacheError(JitensorError):
    """The on-disk kernel cache is unusable (corrupt entry, unsafe directory); never raised into a user's call."""


# Codes compiled code writes into the error word (pointer-table slot 0) when a runtime check fails; lowering
# emits them, the runtime turns them into errors. Numbered by the disk cache's manifests: never renumber.
ERR_INDEX, ERR_NEG_POWER = 1, 2
ERROR_MESSAGES = {ERR_INDEX: "index out of bounds in an integer-array index (np.take / x[idx])",
                  ERR_NEG_POWER: "Integers to negative integer powers are not allowed."}


class CacheWarning(UserWarning):
    """A cache entry was dropped or the disk cache was disabled; the call still succeeds."""


class RecordWarning(UserWarning):
    """The tuning-record store is unreadable (corrupt, or of another format), a record could not be
    stored, or an imported line was skipped; compilation goes on with the default schedule."""


class TuningWarning(UserWarning):
    """Autotuning failed or was skipped; the function runs with its default schedules."""
