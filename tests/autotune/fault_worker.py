"""A measurement worker that misbehaves on request, for tests: a candidate whose parallel grain (or template
grain knob) is 7771 crashes the worker, 7772 hangs it, 7773 computes a wrong result.

Misbehaving by trial order instead (for `tune`, whose search picks the candidates): with FAULT_WORKER_PLAN set
to a file holding comma-separated actions, the n-th candidate this worker and its restarts check (counted in
the file `<plan>.n`, so the count survives a crash) does the n-th action: "ok", "crash", "hang", "wrong" (its
result is off by one), or "slow" (its timings are multiplied by 1000); candidates past the plan are "ok"."""
import os
import sys
import time

# run as a script, its directory is on sys.path, not the checkout: import the jitensor these tests test
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from jitensor.autotune import measure  # noqa: E402

_run_once = measure.run_once
_compare = measure.compare
_time_program = measure.time_program
_action = ["ok"]


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


def _next_action() -> str:
    plan = os.environ.get("FAULT_WORKER_PLAN")
    if not plan:
        return "ok"
    with open(plan) as f:
        actions = [a.strip() for a in f.read().split(",")]
    try:
        with open(plan + ".n") as f:
            n = int(f.read() or 0)
    except FileNotFoundError:
        n = 0
    with open(plan + ".n", "w") as f:
        f.write(str(n + 1))
    return actions[n] if n < len(actions) else "ok"


def compare(got, want):  # called once per candidate ("run" message), after its run
    act = _action[0] = _next_action()
    if act == "crash":
        os.abort()
    if act == "hang":
        time.sleep(3600)
    if act == "wrong":
        got = {name: a + 1 for name, a in got.items()}
    return _compare(got, want)


def time_program(*args, **kwargs):
    costs = _time_program(*args, **kwargs)
    return [c * 1000 for c in costs] if _action[0] == "slow" else costs


measure.run_once = run_once
measure.compare = compare
measure.time_program = time_program

if __name__ == "__main__":
    measure.main()
