from test_primitives import *
from test_primitives import _candidates, PRELUDES
import collections
from hypothesis import HealthCheck, given, settings, strategies as st
STATS = collections.Counter()

@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_native(data):
    case = data.draw(st.sampled_from(sorted(CASES)))
    k0 = main_kernel(case)
    accepted = list(PRELUDES.get(case, [])) if data.draw(st.booleans()) else []
    k = apply(k0, accepted)
    for _ in range(data.draw(st.integers(1, 8))):
        step = _candidates(k, data.draw)
        try:
            k = apply(k, [step])
            STATS[type(step).__name__ + "+"] += 1
        except ScheduleError as e:
            STATS[type(step).__name__ + "-"] += 1
            continue
        accepted.append(step)
    check(case, accepted)
    p = prog(case)
    ks = list(p.kernels); ks[p.main] = k
    got = run_native(ks, p.init)
    want, _ = reference(case)
    for name, shape in p.outs:
        g, w = got[name], want[name]
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"{case} {accepted}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{case} {accepted}")

def test_zz_stats():
    print(sorted(STATS.items()))
