"""jitensor: a just-in-time tensor compiler for numpy code.

    @jitensor.jit
    def gelu(x):
        return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))
"""
__version__ = "0.1.0"

from . import cache, errors  # noqa: E402
from .api import explain, jit, trace  # noqa: E402
from .target import Target  # noqa: E402


def tune(fn, *args, **kwargs):
    """Autotune the kernels of `fn(*args)` and store the best schedules as tuning records (see
    `jitensor.autotune.tuner.tune` for the options: trials=, timeout=, seed=, records=, strategy=, progress=).
    Later calls of `fn`, in this process or any other, compile with the records. Returns a Report."""
    from .autotune.tuner import tune as _tune
    return _tune(fn, *args, **kwargs)


def __getattr__(name):  # `jitensor.onnx` imports onnx (~0.5 s) only when used
    if name == "onnx":
        import importlib
        return importlib.import_module(".onnx", __name__)
    raise AttributeError(f"module 'jitensor' has no attribute '{name}'")


__all__ = ["jit", "explain", "trace", "tune", "errors", "cache", "onnx", "Target", "__version__"]
