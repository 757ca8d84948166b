"""Differential tests: the same random operations against cairn and a real etcd.

Reproduce a failure with the command printed in the failure message, e.g.

    CAIRN_DIFF_SEED=2 CAIRN_DIFF_OPS=400 CAIRN_BUILD=$PWD/build \
        python3 -m pytest -x -q tests/test_differential.py

CAIRN_DIFF_SEED takes one seed or a comma-separated list; CAIRN_DIFF_OPS the
number of random operations per seed.  With CAIRN_TEST_TARGET=etcd both
sides are real etcd servers (a self-check of the generator and normalizer).
"""

import os

import pytest
from google.protobuf import text_format
from etcd3.etcdrpc import rpc_pb2 as pb

import cluster
import diffgen

SEEDS = [int(s) for s in os.environ.get("CAIRN_DIFF_SEED", "1,2,3,38").split(",") if s.strip()]
NOPS = int(os.environ.get("CAIRN_DIFF_OPS", "400"))


def repro_cmd(seed, nops, test):
    return ("CAIRN_DIFF_SEED=%d CAIRN_DIFF_OPS=%d CAIRN_TEST_TARGET=%s CAIRN_BUILD=%s "
            "python3 -m pytest -x -q tests/test_differential.py -k %s"
            % (seed, nops, cluster.TARGET, os.environ.get("CAIRN_BUILD", "<build>"), test))


def run_ops(gen, dut, ref, n, seed, test, first_index=0):
    """Send n generated ops to both servers; fail at the first difference."""
    history = []
    for i in range(first_index, first_index + n):
        method, req = gen.next_op()
        r_dut = diffgen.call(dut, method, req)
        r_ref = diffgen.call(ref, method, req)
        history.append("#%d %s" % (i, diffgen.fmt(method, req)))
        if not diffgen.results_equal(method, r_dut, r_ref):
            pytest.fail(
                "differential mismatch: seed=%d op #%d\n"
                "reproduce: %s\n"
                "previous ops:\n  %s\n"
                "op: %s\n"
                "--- %s (under test) answered:\n%s\n"
                "--- etcd (reference) answered:\n%s\n"
                % (seed, i, repro_cmd(seed, NOPS, test),
                   "\n  ".join(history[-16:-1]) or "(none)",
                   diffgen.fmt(method, req),
                   dut.kind, diffgen.fmt_result(r_dut), diffgen.fmt_result(r_ref)),
                pytrace=False)
        gen.observe(method, req, r_ref[1] if r_ref[0] == "ok" else None)
    return first_index + n


def assert_same_state(dut, ref, what):
    """Everything in the keyspace, compared at the current revision."""
    req = pb.RangeRequest(key=b"\0", range_end=b"\0")
    a = diffgen.normalize("Range", diffgen.call(dut, "Range", req))
    b = diffgen.normalize("Range", diffgen.call(ref, "Range", req))
    assert a == b, "final state differs (%s):\n%s\n---- etcd:\n%s" % (what, a, b)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_ops(seed, cairn, etcd):
    print("differential seed=%d ops=%d" % (seed, NOPS))
    gen = diffgen.Generator(seed)
    run_ops(gen, cairn, etcd, NOPS, seed, "test_random_ops")
    assert_same_state(cairn, etcd, "seed %d" % seed)
    # HashKV is etcd's algorithm over the same records: the same hash and
    # compacted revision after the same history (lease ids are the ops').
    got = cairn.maint.HashKV(pb.HashKVRequest(revision=0), timeout=10)
    want = etcd.maint.HashKV(pb.HashKVRequest(revision=0), timeout=10)
    assert (got.hash, got.compact_revision, got.header.revision) == \
        (want.hash, want.compact_revision, want.header.revision), "HashKV differs (seed %d)" % seed


def _ev_text(ev):
    return text_format.MessageToString(ev, as_one_line=True)


def _open(server, **kw):
    w = cluster.WatchStream(server, pb.WatchCreateRequest(**kw))
    created = w.next_response()
    assert created.created, created
    return w, created


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_watch_differential(seed, cairn, etcd):
    """Watches opened in the past replay history and then follow live ops;
    the event lists must be identical on both servers."""
    print("watch differential seed=%d" % seed)
    test = "test_watch_differential"
    gen = diffgen.Generator(seed * 1000 + 7, allow_compact=False)
    idx = run_ops(gen, cairn, etcd, 120, seed, test)
    rev = gen.st.rev
    specs = [
        dict(key=b"a", range_end=diffgen.prefix_end(b"a"), start_revision=max(1, rev // 2),
             prev_kv=True),
        dict(key=b"\0", range_end=b"\0", start_revision=1),
        dict(key=b"b/1", start_revision=0, prev_kv=True, filters=[pb.WatchCreateRequest.NODELETE]),
        dict(key=b"b", range_end=b"\0", start_revision=rev, filters=[pb.WatchCreateRequest.NOPUT]),
    ]
    watches = []
    try:
        for spec in specs:
            wd, _ = _open(cairn, **spec)
            watches.append(wd)
            we, _ = _open(etcd, **spec)
            watches.append(we)
        idx = run_ops(gen, cairn, etcd, 150, seed, test, first_index=idx)

        # Sentinels: one put in every watched range, then one delete for the
        # NOPUT watcher.
        s1 = s2 = s3 = None
        for srv in (cairn, etcd):
            s1 = srv.kv.Put(pb.PutRequest(key=b"b/1", value=b"~sentinel~"), timeout=30).header.revision
            s2 = srv.kv.Put(pb.PutRequest(key=b"a/~sentinel", value=b"x"), timeout=30).header.revision
            s3 = srv.kv.DeleteRange(pb.DeleteRangeRequest(key=b"b/1"), timeout=30).header.revision
        until = [
            lambda ev: ev.kv.key == b"a/~sentinel",
            lambda ev: ev.kv.mod_revision == s3,
            lambda ev: ev.kv.mod_revision == s1,
            lambda ev: ev.kv.mod_revision == s3,
        ]
        for n, spec in enumerate(specs):
            got_dut = [_ev_text(e) for e in watches[2 * n].collect_events(until[n])]
            got_ref = [_ev_text(e) for e in watches[2 * n + 1].collect_events(until[n])]
            if got_dut != got_ref:
                first = next((i for i, (x, y) in enumerate(zip(got_dut, got_ref)) if x != y),
                             min(len(got_dut), len(got_ref)))
                pytest.fail("watch %s: event lists differ at event %d (seed %d, %d vs %d events)\n"
                            "reproduce: %s\n%s: %s\netcd: %s"
                            % (spec, first, seed, len(got_dut), len(got_ref),
                               repro_cmd(seed, NOPS, test), cairn.kind,
                               got_dut[first:first + 3], got_ref[first:first + 3]),
                            pytrace=False)
            assert got_ref, "no events at all for %s" % spec
    finally:
        for w in watches:
            w.close()
    assert_same_state(cairn, etcd, "after watch test")


def test_watch_compacted_revision_differential(cairn, etcd):
    """A watch starting before the compaction point is cancelled with
    compact_revision set; compare what both servers send."""
    for srv in (cairn, etcd):
        for i in range(6):
            srv.kv.Put(pb.PutRequest(key=b"w/%d" % (i % 2), value=b"v%d" % i), timeout=30)
        srv.kv.Compact(pb.CompactionRequest(revision=5, physical=True), timeout=30)
    out = []
    for srv in (cairn, etcd):
        w = cluster.WatchStream(srv, pb.WatchCreateRequest(key=b"w/", range_end=b"w0",
                                                            start_revision=2))
        try:
            seen = []
            while True:
                r = w.next_response()
                seen.append((r.created, r.canceled, r.compact_revision,
                             [_ev_text(e) for e in r.events]))
                if r.canceled or r.compact_revision or len(seen) > 5:
                    break
        finally:
            w.close()
        out.append(seen)
    # etcd 3.4: first {created}, then {canceled, compact_revision=5}.
    assert out[0] == out[1]
    assert out[1][-1][1:3] == (True, 5)
