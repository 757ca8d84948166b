"""Seeded differential RBAC test: one generated auth scenario (users, roles,
permissions, tokens, and KV / Txn / Watch / Lease / Maintenance / Cluster /
Auth calls by every user) run against the server under test and a real etcd
through etcd's gRPC API; every step's normalized outcome must be equal.  The
scenario itself is in rbac_scenario.py (its docstring lists the etcd rules
it exercises and the etcd-version differences it stays away from).

    # cairn against etcd (the default)
    CAIRN_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/test_auth_rbac.py
    # etcd against etcd: checks the generator and the normalization alone
    CAIRN_RBAC_KINDS=etcd,etcd /usr/bin/python3 -m pytest -q tests/test_auth_rbac.py
    # one seed, longer
    CAIRN_RBAC_SEEDS=17 CAIRN_RBAC_OPS=600 ... tests/test_auth_rbac.py
    # print one seed's steps, or run them against a server at HOST:PORT
    /usr/bin/python3 tests/rbac_scenario.py 17 [HOST:PORT]

| variable | meaning |
| --- | --- |
| `CAIRN_RBAC_KINDS` | `<under test>,<reference>` (default `cairn,etcd`) |
| `CAIRN_RBAC_SEEDS` | comma list of seeds (default `1,2,3`) |
| `CAIRN_RBAC_OPS` | calls in the main mix per seed (default 220) |

Each seed gets two fresh servers; the two runs go in parallel.  Besides the
equality, the reference run must agree with the generator's permission
model (so a wrong model cannot steer the scenario away from what it claims
to test) and must contain enough refusals and successes.
"""

import concurrent.futures
import os
import time

import pytest

import rbac_scenario as rs

KINDS = [k.strip() for k in os.environ.get("CAIRN_RBAC_KINDS", "cairn,etcd").split(",")]
SEEDS = [int(s) for s in os.environ.get("CAIRN_RBAC_SEEDS", "1,2,3").split(",") if s.strip()]
OPS = int(os.environ.get("CAIRN_RBAC_OPS", str(rs.DEFAULT_OPS)))
assert len(KINDS) == 2 and all(k in ("cairn", "etcd") for k in KINDS), KINDS

DENIED = "PERMISSION_DENIED: etcdserver: permission denied"


def test_generator_is_deterministic():
    """A seed is always the same scenario (no server needed)."""
    for seed in SEEDS + [101, 202]:
        a, b = rs.generate(seed, OPS), rs.generate(seed, OPS)
        assert [(s.actor, s.op, repr(s.args), s.desc, s.expect) for s in a] == \
            [(s.actor, s.op, repr(s.args), s.desc, s.expect) for s in b]


def test_permission_intervals_as_etcd():
    """The model's interval rules on the cases of etcd's own
    auth/range_perm_cache_test.go (a = [b, e), None = to the end)."""
    cases = [  # (permission intervals, query begin, query end, allowed)
        ([(b"a", b"c"), (b"x", b"z")], b"a", b"z", False),
        ([(b"a", b"f"), (b"c", b"d"), (b"f", b"z")], b"a", b"z", True),
        ([(b"a", b"d"), (b"a", b"b"), (b"c", b"f")], b"a", b"f", True),
        ([(b"a", b"d"), (b"a", b"b"), (b"c", b"f")], b"a", None, False),
        ([(b"a", None)], b"a", None, True),
        ([(b"\0", None)], b"a", None, True),
        ([(b"\0", None)], b"\0", None, True),
    ]
    for ivls, b, e, want in cases:
        assert rs.covers(ivls, (b, e)) == want, (ivls, b, e)
    points = [
        ([(b"a", b"c"), (b"x", b"z")], b"f", False),
        ([(b"a", b"f"), (b"c", b"d"), (b"f", b"z")], b"b", True),
        ([(b"a", b"d"), (b"a", b"b"), (b"c", b"f")], b"d", True),
        ([(b"a", b"d"), (b"a", b"b"), (b"c", b"f")], b"f", False),
        ([(b"a", b"d"), (b"a", b"b"), (b"c", None)], b"f", True),
        ([(b"a", b"d"), (b"a", b"b"), (b"\0", None)], b"f", True),
    ]
    for ivls, k, want in points:
        assert rs.query_allowed(ivls, k, b"") == want, (ivls, k)
    # A permission on one key is [key, key\0): adjacent to a range starting there.
    ivls = [rs.perm_interval(b"/a/x", b""), rs.perm_interval(b"/a/x\0", b"/b")]
    assert rs.query_allowed(ivls, b"/a/x", b"/b")
    assert not rs.query_allowed(ivls, b"/a/", b"/b")
    assert rs.query_allowed([rs.perm_interval(b"/c", b"\0")], b"/d", b"\0")


@pytest.mark.parametrize("seed", SEEDS)
def test_rbac_scenario_matches_reference(server_factory, seed):
    name_a, name_b = "%s(under test)" % KINDS[0], "%s(reference)" % KINDS[1]
    print("RBAC scenario seed=%d kinds=%s ops=%d" % (seed, ",".join(KINDS), OPS))
    steps = rs.generate(seed, OPS)
    under_test = server_factory(kind=KINDS[0])
    reference = server_factory(kind=KINDS[1])

    # Both runs at once (each on its own server); every call has a timeout,
    # so the bound below is only a backstop.
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        fa = ex.submit(rs.run, under_test.channel(), steps)
        fb = ex.submit(rs.run, reference.channel(), steps)
        out_a, out_b = fa.result(timeout=600), fb.result(timeout=600)
    print("%d steps in %.1fs" % (len(steps), time.monotonic() - t0))
    repro = ("reproduce: CAIRN_RBAC_SEEDS=%d CAIRN_RBAC_OPS=%d CAIRN_RBAC_KINDS=%s "
             "python3 -m pytest -q tests/test_auth_rbac.py" % (seed, OPS, ",".join(KINDS)))

    # 1. Every step's outcome equal.
    i = rs.first_difference(steps, out_a, out_b)
    assert i is None, "seed %d: first difference at step %d of %d\n%s\n%s" % (
        seed, i, len(steps), rs.report_difference(steps, i, out_a, out_b, name_a, name_b), repro)

    # 2. The generator's permission model agrees with the reference.
    bad = rs.check_expectations(steps, out_b)
    assert not bad, "seed %d: the scenario's model disagrees with %s (a test bug):\n%s" % (
        seed, name_b, "\n".join("  %r: expected %r, got %s" % (st, exp, rs.format_outcome(out))
                                for st, exp, out in bad[:10]))

    # 3. Not vacuous: plenty of both refusals and successes, and each kind
    # of auth outcome at least once.
    cats = rs.categories(steps, out_b)
    print("outcomes:", "\n  ".join("%4d %s" % (n, k) for k, n in sorted(cats.items())))
    # (The default seeds have 55-110 refusals and 160+ successes; the bounds
    # are loose so that any seed passes them.)
    assert cats.get(DENIED, 0) >= 10, cats
    assert cats.get("ok", 0) >= 80, cats
    for k in ["INVALID_ARGUMENT: etcdserver: user name is empty",
              "UNAUTHENTICATED: etcdserver: invalid auth token",
              "INVALID_ARGUMENT: etcdserver: authentication failed, invalid user ID or password",
              "FAILED_PRECONDITION: etcdserver: root user does not have root role",
              "UNKNOWN: auth: permission denied",
              "watch created"]:
        assert cats.get(k, 0) >= 1, (k, cats)
    assert any(k.startswith("watch canceled:") for k in cats), cats
    # Refused and allowed calls by ordinary users, not only by root/nobody.
    users_ok = sum(1 for st, o in zip(steps, out_b)
                   if st.actor.startswith("u") and o[0] == "ok" and st.op != "authenticate")
    users_denied = sum(1 for st, o in zip(steps, out_b)
                       if st.actor.startswith("u") and o == rs.ERR_DENIED)
    assert users_ok >= 3 and users_denied >= 10, (users_ok, users_denied)
