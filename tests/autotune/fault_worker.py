"""A measurement worker that misbehaves on request, for tests: a candidate whose parallel grain (or template
grain knob) is 7771 crashes the worker, 7772 hangs it, 7773 computes a wrong result."""
import os
import time

from jitensor.autotune import measure

_run_once = measure.run_once


def _grain(k):
    if k.template is not None:
        return dict(k.template[1]).get("grain")
    return getattr(k.body, "grain", 0)


def run_once(prog, k, buffers):
    g = _grain(k)
    if g == 7771:
        os.abort()
    if g == 7772:
        time.sleep(3600)
    out = _run_once(prog, k, buffers)
    if g == 7773:
        for name in k.outputs or [b.name for b in k.buffers][-1:]:
            out[name] = out[name] + 1
    return out


measure.run_once = run_once

if __name__ == "__main__":
    measure.main()
