"""The README's first example runs as pasted, and its claims hold."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _first_python_block() -> str:
    m = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert m, "README.md has no ```python block"
    return m.group(1)


def test_first_example_runs_as_pasted():
    ns: dict = {"__name__": "readme_example"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_first_python_block(), str(README), "exec"), ns)  # every name it uses, it defines
    # and it computes what numpy computes
    x, g, b = ns["x"], ns["g"], ns["b"]
    np.testing.assert_allclose(ns["y"], ns["layernorm"].__wrapped__(x, g, b), rtol=1e-4, atol=1e-5)
    assert ns["y"].dtype == np.float32 and ns["gelu"](x).dtype == np.float32
    assert out.getvalue().strip(), "the example prints its check"
