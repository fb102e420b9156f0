"""Regressions found by the differential fuzzer (tests/fuzzgen.py), minimized: one named test per wrong
result or wrong error, each on both sides of the threshold it was found at when one was involved."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import check


def _clip_wide_python_int_bounds(a):
    return np.clip(a, -1, 2), np.clip(a, 1, 300), np.clip(a, -5, 1000), np.clip(a, -1000, 1000)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.int8, np.uint64])
def test_clip_with_python_int_bounds_beyond_the_dtype(dtype):
    # numpy drops a Python int bound beyond the integer dtype's range instead of raising OverflowError
    a = np.array([0, 1, 5, 100, np.iinfo(dtype).max], dtype=dtype)
    check(_clip_wide_python_int_bounds, a)
