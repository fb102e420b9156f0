"""jitensor: a just-in-time tensor compiler for numpy code.

    @jitensor.jit
    def gelu(x):
        return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))
"""
__version__ = "0.1.0"

from . import cache, errors  # noqa: E402
from .api import explain, jit  # noqa: E402
from .target import Target  # noqa: E402

__all__ = ["jit", "explain", "errors", "cache", "Target", "__version__"]
