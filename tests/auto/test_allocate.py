"""The knapsack against a brute-force optimum; the budget parser."""
import itertools
import random

import pytest

from netshrink.auto.allocate import knapsack, uniform
from netshrink.auto.budget import Budget, parse_size, parse_time
from netshrink.errors import NetshrinkError


def _brute(costs, damage, cap):
    best = None
    for p in itertools.product(*[range(len(c)) for c in costs]):
        if sum(c[i] for c, i in zip(costs, p)) <= cap:
            v = sum(d[i] for d, i in zip(damage, p))
            if best is None or v < best[0] - 1e-12:
                best = (v, list(p))
    return best


def test_knapsack_hand_case():
    # layer A: (cost, damage) (2, 9) (4, 3) (7, 0); layer B: (1, 5) (3, 1) (6, 0); budget 8.
    # Brute force: A=(4,3) + B=(3,1) = cost 7, damage 4 beats (7,0)+(1,5) = 5 and (2,9)+(6,0) = 9.
    costs, damage = [[2, 4, 7], [1, 3, 6]], [[9, 3, 0], [5, 1, 0]]
    assert knapsack(costs, damage, 8, resolution=8) == [1, 1] == _brute(costs, damage, 8)[1]
    assert knapsack(costs, damage, 2, resolution=8) is None
    assert uniform(costs, damage, 8) == [1, 1]


def test_knapsack_matches_brute_force_on_random_cases():
    rng = random.Random(0)
    for _ in range(300):
        costs = [[rng.randint(1, 9) for _ in range(rng.randint(1, 4))] for _ in range(rng.randint(1, 4))]
        damage = [[rng.random() for _ in c] for c in costs]
        cap = rng.randint(0, 25)
        got, want = knapsack(costs, damage, cap, resolution=max(cap, 1)), _brute(costs, damage, cap)
        if want is None:
            assert got is None
        else:
            assert sum(c[i] for c, i in zip(costs, got)) <= cap
            assert sum(d[i] for d, i in zip(damage, got)) == pytest.approx(want[0])


def test_knapsack_rounding_stays_feasible():
    # Coarse resolution rounds costs up: the answer may be suboptimal but never over budget.
    rng = random.Random(1)
    for _ in range(100):
        costs = [[rng.uniform(10, 1000) for _ in range(5)] for _ in range(6)]
        damage = [[rng.random() for _ in c] for c in costs]
        cap = rng.uniform(100, 4000)
        got = knapsack(costs, damage, cap, resolution=50)
        if got is not None:
            assert sum(c[i] for c, i in zip(costs, got)) <= cap


def test_budget_parsing():
    assert parse_size("200KB") == 200_000
    assert parse_size("1.5MiB") == 1_572_864
    assert parse_size(12000) == 12000
    assert parse_time("2ms") == 2.0 and parse_time("500us") == 0.5 and parse_time("0.01s") == 10.0
    b = Budget.parse(size="12kB", latency="3ms", batch=64, max_drop=0.5)
    assert (b.bytes, b.latency_ms, b.batch) == (12000, 3.0, 64)
    for bad in ("12 parsecs", "-3KB", "KB"):
        with pytest.raises(NetshrinkError, match="size"):
            parse_size(bad)
    with pytest.raises(NetshrinkError, match="needs a size"):
        Budget()


def test_a_missed_budget_names_the_nearest_points():
    from netshrink import Recipe
    from netshrink.auto.search import AutoResult, Point, _message

    pts = [Point("auto", 1000, 990, 0.90, 2.0, None, 1.0, Recipe()),
           Point("auto x1.5", 1500, 1480, 0.915, 0.4, None, 1.0, Recipe())]
    res = AutoResult(Budget(bytes=1000, max_drop=0.5), 0.92, 40000, None, pts, pts[0], None, [], 2.0)
    res.message = _message(res)
    assert not res.met
    with pytest.raises(NetshrinkError) as e:
        res.check()
    msg = str(e.value)
    assert "not met" in msg and "990 B, drop 2.00 pp" in msg and "1,480 B, drop 0.40 pp" in msg
    assert "\n" not in msg
