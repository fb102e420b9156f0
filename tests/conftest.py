"""Test setup: make `tests/helpers.py` importable from every test directory, and keep the tests' compiled
kernels out of the user's cache directory (tests of the cache itself point it elsewhere again)."""
import os
import sys
import tempfile

os.environ.setdefault("JITENSOR_CACHE_DIR", tempfile.mkdtemp(prefix="jitensor-test-cache-"))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
