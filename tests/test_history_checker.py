"""Unit tests of history_check: hand-made histories, one correct and many broken.

No servers: each broken history differs from the correct one by one fault
of the kind the cluster tests hunt for, and must be reported under the
right check with a message that names the culprit.
"""

import copy

import pytest

import history_check
from history_model import (FAIL, OK, UNKNOWN, Event, Final, History, LeaseRecord, Op, WatchLog,
                           WatchResponse)

LEASE = 0x100


def build_events(writes):
    """[(rev, "PUT"|"DELETE", key, value, lease)] -> revision -> [Event], with
    create_revision, version and prev_kv as etcd computes them."""
    state, events = {}, {}
    for rev, kind, key, value, lease in writes:
        prev = state.get(key)
        if kind == "PUT":
            ev = Event(rev, "PUT", key, value, prev[2] if prev else rev,
                       prev[3] + 1 if prev else 1, lease, prev)
            state[key] = (value, rev, ev.create_revision, ev.version, lease)
        else:
            ev = Event(rev, "DELETE", key, prev=prev)
            del state[key]
        events.setdefault(rev, []).append(ev)
    return events


WRITES = [
    (2, "PUT", b"h/k0", b"a", 0),
    (3, "PUT", b"h/k1", b"b", 0),
    (4, "PUT", b"h/k0", b"c", 0),            # the CAS
    (5, "PUT", b"h/l/100/0", b"d", LEASE),
    (6, "PUT", b"h/l/100/1", b"e", LEASE),
    (7, "DELETE", b"h/l/100/0", b"", 0),     # the revoke: one revision, two events
    (7, "DELETE", b"h/l/100/1", b"", 0),
    (8, "DELETE", b"h/k1", b"", 0),
]


def kv(value, mod, create, version, lease=0):
    return (value, mod, create, version, lease)


def correct_history():
    ops = [
        Op(1, 0, "put", b"h/k0", b"a", "m1", 1.0, 1.1, OK, 2),
        Op(2, 1, "put", b"h/k1", b"b", "m2", 1.2, 1.3, OK, 3),
        Op(3, 0, "get", b"h/k0", member="m3", invoke=1.4, complete=1.5, status=OK, revision=3,
           read=kv(b"a", 2, 2, 1)),
        Op(4, 1, "cas", b"h/k0", b"c", "m1", 1.6, 1.7, OK, 4, compare=("mod", 2),
           succeeded=True),
        Op(5, 0, "cas", b"h/k1", b"x", "m2", 1.8, 1.9, OK, 4, compare=("value", b"zzz"),
           succeeded=False, read=kv(b"b", 3, 3, 1)),
        Op(6, 1, "lease_grant", member="m1", invoke=2.0, complete=2.05, status=OK, lease=LEASE),
        Op(7, 1, "lease_put", b"h/l/100/0", b"d", "m2", 2.1, 2.15, OK, 5, lease=LEASE),
        Op(8, 1, "lease_put", b"h/l/100/1", b"e", "m3", 2.2, 2.25, OK, 6, lease=LEASE),
        Op(9, 0, "lease_revoke", member="m3", invoke=2.3, complete=2.35, status=OK, revision=7,
           lease=LEASE),
        Op(10, 0, "delete", b"h/k1", member="m1", invoke=2.4, complete=2.5, status=OK,
           revision=8, deleted=1),
        # A serializable read may be stale: it only has to match its own revision.
        Op(11, 1, "sget", b"h/k1", member="m3", invoke=2.6, complete=2.7, status=OK,
           revision=3, read=kv(b"b", 3, 3, 1)),
        # Unknown outcome, never applied: fine.
        Op(12, 0, "put", b"h/k2", b"lost-in-flight", "m2", 2.8, 5.8, UNKNOWN,
           error="DEADLINE_EXCEEDED"),
        # Definitely failed, never applied: fine.
        Op(13, 1, "put", b"h/k3", b"refused", "m1", 2.9, 2.95, FAIL,
           error="INVALID_ARGUMENT"),
        Op(14, 1, "get", b"h/k1", member="m2", invoke=2.96, complete=2.99, status=OK,
           revision=8, read=None),
    ]
    events = build_events(WRITES)
    revs = sorted(events)
    per_rev = [WatchResponse(1.0 + r / 10, r, copy.deepcopy(events[r])) for r in revs]
    all_in_one = [WatchResponse(3.0, 8, [e for r in revs for e in copy.deepcopy(events[r])])]
    final_state = {b"h/k0": kv(b"c", 4, 2, 2)}
    return History(
        ops=ops,
        leases=[LeaseRecord(LEASE, 2, OK, [b"h/l/100/0", b"h/l/100/1"], OK, 7)],
        watches=[WatchLog("m1", per_rev, [(1, 0), (5, 4)], ["UNAVAILABLE: restarted"]),
                 WatchLog("m2", all_in_one, [(1, 0)])],
        final=Final(revision=8, events=events,
                    states={"m1": dict(final_state), "m2": dict(final_state)},
                    samples=[("m2", 3, {b"h/k0": kv(b"a", 2, 2, 1), b"h/k1": kv(b"b", 3, 3, 1)}),
                             ("m1", 6, {b"h/k0": kv(b"c", 4, 2, 2), b"h/k1": kv(b"b", 3, 3, 1),
                                        b"h/l/100/0": kv(b"d", 5, 5, 1, LEASE),
                                        b"h/l/100/1": kv(b"e", 6, 6, 1, LEASE)})],
                    hashes={"m1": (8, 1234, 0), "m2": (8, 1234, 0)}),
        lease_prefix=b"h/l/")


def op(h, op_id):
    return next(o for o in h.ops if o.id == op_id)


def assert_caught(h, check, *words):
    errors = history_check.check(h)
    hits = [e for e in errors if e.startswith("[%s]" % check) and all(w in e for w in words)]
    assert hits, "expected a [%s] violation mentioning %r, got:\n%s" % (
        check, words, "\n".join(errors) or "(no violations)")
    return errors


def add_write(h, rev, kind, key, value=b"", lease=0):
    """Append a write at revision rev to the final history, the member states
    and the watchers, so only the fault under test is left."""
    add_writes(h, [(rev, kind, key, value, lease)])


def add_writes(h, writes):
    h.final.events = build_events(WRITES + writes)
    rev = h.final.revision = writes[-1][0]
    for w in h.watches:
        for r, *_ in writes:
            w.responses.append(WatchResponse(9.0, r, copy.deepcopy(h.final.events[r])))
    state = history_check.Replay(h.final.events).all_at(rev)
    h.final.states = {m: dict(state) for m in h.final.states}
    h.final.hashes = {m: (rev, 99, 0) for m in h.final.hashes}


def test_correct_history_passes():
    assert history_check.check(correct_history()) == []


def test_unknown_write_applied_once_passes():
    h = correct_history()
    add_write(h, 9, "PUT", b"h/k2", b"lost-in-flight")
    assert history_check.check(h) == []


def test_lost_acknowledged_write():
    h = correct_history()
    h.ops.append(Op(20, 2, "put", b"h/k4", b"acked-but-lost", "m3", 3.0, 3.1, OK, 8))
    assert_caught(h, "lost", "op#20", "acked-but-lost", "revision 8")


def test_lost_acknowledged_delete():
    h = correct_history()
    h.ops.append(Op(20, 2, "delete", b"h/k0", member="m3", invoke=3.0, complete=3.1, status=OK,
                    revision=9, deleted=1))
    h.final.revision = 9
    h.final.events[9] = [Event(9, "PUT", b"h/k5", b"?", 9, 1)]
    assert_caught(h, "lost", "op#20", "delete h/k0")


def test_phantom_value():
    h = correct_history()
    add_write(h, 9, "PUT", b"h/k2", b"never-written")
    assert_caught(h, "phantom", "never-written", "revision 9")


def test_definitely_failed_write_applied():
    h = correct_history()
    add_write(h, 9, "PUT", b"h/k3", b"refused")
    assert_caught(h, "phantom", "op#13", "failed definitely")


def test_phantom_delete():
    h = correct_history()
    add_write(h, 9, "DELETE", b"h/k0")
    assert_caught(h, "phantom", "revision 9 deletes h/k0")


def test_duplicate_value():
    h = correct_history()
    add_write(h, 9, "PUT", b"h/k1", b"b")
    assert_caught(h, "duplicate", "'b'", "[3, 9]")


def test_unknown_write_applied_twice():
    h = correct_history()
    add_writes(h, [(9, "PUT", b"h/k2", b"lost-in-flight", 0),
                   (10, "PUT", b"h/k2", b"lost-in-flight", 0)])
    errors = assert_caught(h, "duplicate", "lost-in-flight", "[9, 10]")
    assert len(errors) == 1, errors


def test_stale_linearizable_read():
    h = correct_history()
    # Invoked after the CAS at revision 4 was acknowledged (1.7), still sees "a"@2.
    h.ops.append(Op(20, 2, "get", b"h/k0", member="m3", invoke=1.75, complete=1.8, status=OK,
                    revision=3, read=kv(b"a", 2, 2, 1)))
    assert_caught(h, "stale-read", "op#20", "revision 4")


def test_stale_read_of_a_delete():
    h = correct_history()
    # The delete at 8 was acked at 2.5; a later get that still finds h/k1 is stale.
    h.ops.append(Op(20, 2, "get", b"h/k1", member="m2", invoke=2.6, complete=2.65, status=OK,
                    revision=7, read=kv(b"b", 3, 3, 1)))
    assert_caught(h, "stale-read", "op#20")


def test_read_that_matches_no_revision():
    h = correct_history()
    op(h, 3).read = kv(b"c", 4, 2, 2)         # "c" was written at 4, not there at 3
    assert_caught(h, "read", "op#3", "revision 3")


def test_serializable_read_wrong_value():
    h = correct_history()
    op(h, 11).read = kv(b"zz", 3, 3, 1)
    assert_caught(h, "read", "op#11")


def test_broken_cas_success():
    h = correct_history()
    op(h, 4).compare = ("mod", 3)             # mod_revision of h/k0 was 2 at revision 3
    assert_caught(h, "cas", "op#4", "succeeded")


def test_broken_cas_failure():
    h = correct_history()
    op(h, 5).compare = ("value", b"b")        # it held: the txn should have succeeded
    assert_caught(h, "cas", "op#5", "failed but its compare held")


def test_real_time_order_of_writes():
    h = correct_history()
    # put a@2 invoked after put b@3 completed: revisions contradict real time.
    op(h, 1).invoke, op(h, 1).complete = 1.35, 1.36
    assert_caught(h, "real-time", "op#1", "op#2")


def test_real_time_order_read_then_write():
    h = correct_history()
    # A read saw revision 8 and completed; a put invoked later got revision 6.
    h.ops.append(Op(20, 2, "get", b"h/k0", member="m3", invoke=2.0, complete=2.01, status=OK,
                    revision=8, read=kv(b"c", 4, 2, 2)))
    assert_caught(h, "real-time", "op#8", "op#20")


def test_missing_revision_in_final_history():
    h = correct_history()
    del h.final.events[6]
    assert_caught(h, "final", "revisions 6 missing")


def test_watch_gap():
    h = correct_history()
    del h.watches[0].responses[2]              # revision 4
    assert_caught(h, "watch", "watcher on m1", "never delivered revisions 4")


def test_watch_resume_skips_a_revision():
    h = correct_history()
    h.watches[0].resumes.append((7, 5))
    assert_caught(h, "watch", "resumed from revision 7 after seeing 5")


def test_watch_duplicate():
    h = correct_history()
    w = h.watches[0]
    w.responses.insert(4, copy.deepcopy(w.responses[3]))   # revision 5 again
    assert_caught(h, "watch", "watcher on m1", "revision 5 delivered twice")


def test_watch_out_of_order():
    h = correct_history()
    w = h.watches[0]
    w.responses[1], w.responses[2] = w.responses[2], w.responses[1]
    assert_caught(h, "watch", "revision 3 after 4")


def test_watch_revision_split_over_two_responses():
    h = correct_history()
    w = h.watches[0]
    r7 = w.responses[5]
    assert r7.header_revision == 7 and len(r7.events) == 2
    w.responses[5:6] = [WatchResponse(1.7, 7, r7.events[:1]), WatchResponse(1.71, 7, r7.events[1:])]
    assert_caught(h, "watch", "revision 7 split over two responses")


def test_watch_event_differs_from_history():
    h = correct_history()
    h.watches[1].responses[0].events[1].value = b"B"
    assert_caught(h, "watch", "watcher on m2", "revision 3")


def test_watch_wrong_prev_kv():
    h = correct_history()
    h.watches[0].responses[2].events[0].prev = kv(b"zz", 2, 2, 1)
    assert_caught(h, "watch", "prev_kv")


def test_watcher_that_stopped_early():
    h = correct_history()
    h.watches[1].responses[0].events = [e for e in h.watches[1].responses[0].events
                                        if e.revision <= 6]
    assert_caught(h, "watch", "stopped at revision 6, final is 8")


def test_lease_key_survives():
    h = correct_history()
    h.ops.append(Op(20, 1, "lease_put", b"h/l/100/2", b"f", "m1", 2.26, 2.27, UNKNOWN,
                    lease=LEASE))
    add_write(h, 9, "PUT", b"h/l/100/2", b"f", LEASE)
    assert_caught(h, "lease", "h/l/100/2", "survives")


def test_lease_alive_at_end():
    h = correct_history()
    h.leases[0].alive_at_end = True
    assert_caught(h, "lease", "lease 100", "still alive")


def test_revoked_lease_keeps_key():
    h = correct_history()
    h.leases[0].revoke_revision = 6            # the keys are only deleted at 7
    assert_caught(h, "lease", "revoked at revision 6")


def test_hashkv_mismatch():
    h = correct_history()
    h.final.hashes["m2"] = (8, 4321, 0)
    assert_caught(h, "hashkv", "m1 rev=8 hash=1234", "m2 rev=8 hash=4321")


def test_member_state_differs():
    h = correct_history()
    h.final.states["m2"][b"h/k0"] = kv(b"a", 2, 2, 1)
    assert_caught(h, "member", "m2", "h/k0")


def test_sampled_range_differs():
    h = correct_history()
    del h.final.samples[0][2][b"h/k1"]
    assert_caught(h, "member", "m2 Range at revision 3")


@pytest.mark.parametrize("n", [50])
def test_reports_are_capped(n):
    h = correct_history()
    for i in range(n):
        h.ops.append(Op(100 + i, 3, "put", b"h/k9", b"v%d" % i, "m1", 3.0, 3.1, OK, 8))
    errors = history_check.check(h)
    lost = [e for e in errors if e.startswith("[lost]")]
    assert len(lost) == history_check.MAX_REPORTS_PER_CHECK + 1
    assert "not shown" in lost[-1]
