"""A 3-member cluster under faults: one seeded run per nemesis, checked end to end.

Each test starts a fresh cluster of the target kind, runs the workload and
watchers for DURATION seconds while its nemesis strikes, then checks the
recorded history (history_check.py).  A failure prints the seed, the
nemesis log, the checker's findings and the command that replays the run.

    CAIRN_TEST_TARGET=etcd /usr/bin/python3 -m pytest -q tests/test_cluster_faults.py
    CAIRN_TEST_TARGET=etcd CAIRN_FAULT_SEED=7 /usr/bin/python3 -m pytest -q \
        tests/test_cluster_faults.py -k kill_leader          # another seed

They run against cairn by default (`make test`) and against a real etcd
cluster with CAIRN_TEST_TARGET=etcd; both must pass.
"""

import copy
import os

import pytest

import cluster
import history_check
import nemesis

TARGET = cluster.TARGET
DURATION = float(os.environ.get("CAIRN_FAULT_DURATION", "15"))
# The default seed of each nemesis test (CAIRN_FAULT_SEED overrides all of them).
SEEDS = {"kill_leader": 101, "kill_follower": 202, "pause": 303, "blackhole": 404,
         "kill_all": 505, "replace_follower": 1101, "replace_leader": 1202, "learner": 1303,
         "move_leader": 1404}


def seed_for(name):
    return int(os.environ.get("CAIRN_FAULT_SEED", SEEDS[name]))


def failure(result, test):
    return "%s\nreplay this test: CAIRN_TEST_TARGET=%s CAIRN_FAULT_SEED=%d /usr/bin/python3 " \
           "-m pytest -q tests/test_cluster_faults.py -k '%s'" % (
               result.report(), result.kind, result.seed, test)


@pytest.mark.parametrize("name", list(SEEDS))
def test_nemesis(name, tmp_path):
    r = nemesis.run_seed(TARGET, seed_for(name), [name], tmp_path, duration=DURATION)
    assert not r.errors, failure(r, name)


def test_membership_changes_under_faults(tmp_path):
    """Every membership nemesis and kill -9 of leader and follower, mixed in
    one schedule."""
    r = nemesis.run_seed(TARGET, int(os.environ.get("CAIRN_FAULT_SEED", 1505)),
                         list(nemesis.MEMBERSHIP) + ["kill_leader", "kill_follower"], tmp_path,
                         duration=max(DURATION, 30))
    assert not r.errors, failure(r, "test_membership_changes_under_faults")


def test_checker_catches_a_rollback_of_every_member(tmp_path):
    """Real data loss: every data dir is copied early in the run and restored
    at the end, so writes acknowledged after the copy vanish from every
    member at once.  The checker must report them lost."""
    r = nemesis.run_seed(TARGET, 606, [], tmp_path, duration=8, sabotage="rollback")
    lost = [e for e in r.errors if e.startswith("[lost]")]
    assert lost, "a rollback of every member went unnoticed:\n" + failure(r, "rollback")


def test_checker_catches_stale_reads(tmp_path):
    """Real stale reads: every "get" goes out serializable while the history
    calls it linearizable; followers lag the leader by a few milliseconds, so
    some of those reads miss a write acknowledged before they began."""
    r = nemesis.run_seed(TARGET, 808, [], tmp_path, duration=5, sabotage="stale-reads")
    stale = [e for e in r.errors if e.startswith(("[stale-read]", "[real-time]"))]
    assert stale, "serializable reads passed as linearizable:\n" + failure(r, "stale")


def test_checker_catches_a_corrupted_real_history(tmp_path):
    """A clean run's history passes; the same history with one recorded fact
    changed (an acked value, a watch response, a read's timing, a member's
    hash, a revision of the final read) fails under the matching check."""
    r = nemesis.run_seed(TARGET, 707, [], tmp_path, duration=5)
    assert not r.errors, failure(r, "corrupted")
    h = r.history
    puts = [o for o in h.ops if o.kind == "put" and o.status == "ok"]
    gets = [o for o in h.ops if o.kind == "get" and o.status == "ok"]
    assert puts and gets and h.final.revision > 20, "the workload did too little"

    def broken(mutate, check):
        bad = copy.deepcopy(h)
        mutate(bad)
        errors = history_check.check(bad)
        assert any(e.startswith("[%s]" % check) for e in errors), \
            "%s not caught after %s; got %s" % (check, mutate.__doc__, errors[:5])

    def acked_value(bad):
        """an acknowledged put's value changed"""
        next(o for o in bad.ops if o.id == puts[len(puts) // 2].id).value = b"corrupt"

    def watch_gap(bad):
        """one watch response dropped"""
        w = bad.watches[0]
        del w.responses[len(w.responses) // 2]

    def stale_get(bad):
        """a get's recorded interval moved after a later write of its key"""
        for g in gets:
            later = [p for p in puts if p.key == g.key and p.revision > g.revision]
            if later:
                o = next(o for o in bad.ops if o.id == g.id)
                o.invoke = later[0].complete + 1e-6
                o.complete = o.invoke + 1e-3
                return
        raise AssertionError("no get followed by a put of its key")

    def hash_flip(bad):
        """one member's HashKV changed"""
        m = sorted(bad.final.hashes)[0]
        rev, hsh, comp = bad.final.hashes[m]
        bad.final.hashes[m] = (rev, hsh ^ 1, comp)

    def revision_missing(bad):
        """a revision dropped from the final read"""
        del bad.final.events[max(bad.final.events) // 2]

    broken(acked_value, "lost")
    broken(acked_value, "phantom")
    broken(watch_gap, "watch")
    broken(stale_get, "stale-read")
    broken(hash_flip, "hashkv")
    broken(revision_missing, "final")


def test_follower_catches_up_from_snapshots(tmp_path):
    """cairn keeps only 50 log entries behind what it applied here, in
    64 KiB segments, so a member killed for a few seconds usually comes back
    behind the log and installs a snapshot of the leader's database while the
    workload and the watchers on it go on; the history must check out either
    way. (How many entries a run writes depends on the machine's load, so
    whether a snapshot was needed is reported, not asserted; the install
    itself is asserted deterministically in test_cluster.py.)"""
    if TARGET != "cairn":
        pytest.skip("cairn's log retention flags")
    extra = ["--snapshot-count", "50", "--experimental-log-segment-bytes", "65536",
             "--log-level", "info"]
    r = nemesis.run_seed(TARGET, int(os.environ.get("CAIRN_FAULT_SEED", 909)),
                         ["kill_follower", "kill_leader"], tmp_path, duration=DURATION,
                         extra_args=extra)
    assert not r.errors, failure(r, "test_follower_catches_up_from_snapshots")
    logs = "".join(open(p, errors="replace").read()
                   for p in tmp_path.glob("**/server.log"))
    print("snapshots installed during the run:", logs.count("installed the leader's snapshot"))
