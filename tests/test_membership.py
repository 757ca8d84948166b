"""Membership changes with etcdctl (member add / promote / update / remove /
list) on a 3-member cluster, cairn against a real etcd cluster in the same
run: the same commands print the same output and the same errors, ids and
ports aside.  A removed member stops, as etcd's does."""

import re
import subprocess
import time

import pytest
from etcd3.etcdrpc import rpc_pb2 as pb

import cluster

# Every test runs its steps on a real etcd cluster and on cairn and compares.
pytestmark = pytest.mark.skipif(cluster.TARGET != "cairn", reason="compares cairn with etcd")


def _ctl(endpoints, *args, timeout=30):
    p = subprocess.run([cluster.ETCDCTL_BIN, "--endpoints", ",".join(endpoints),
                        "--command-timeout", "15s"] + list(args),
                       env=cluster.etcdctl_env(), capture_output=True, text=True, timeout=timeout)
    if p.returncode == 0:
        return p.stdout
    # (the client's retry warnings go to stderr before the error)
    return "rc=%d %s" % (p.returncode, p.stderr.strip().splitlines()[-1])


def _ctl_when_healthy(endpoints, *args, timeout=30):
    """_ctl, again while the cluster answers "unhealthy cluster" (a
    membership change needs every voter connected for the last 5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        got = _ctl(endpoints, *args)
        if "unhealthy cluster" not in got:
            return got
        assert time.monotonic() < deadline, got
        time.sleep(0.5)


def _add_member(endpoints, new, *flags):
    """`member add` for Server `new` (at its peer port); takes the printed
    ETCD_INITIAL_CLUSTER into its flags, as an operator would.  Returns the
    output."""
    added = _ctl_when_healthy(endpoints, "member", "add", new.name, *flags,
                              "--peer-urls=http://127.0.0.1:%d" % new.peer_port)
    env = dict(line.split("=", 1) for line in added.splitlines() if line.startswith("ETCD_"))
    assert env.get("ETCD_INITIAL_CLUSTER_STATE") == '"existing"', added
    new.initial_cluster = env["ETCD_INITIAL_CLUSTER"].strip('"')
    new.cluster_token = "cairn-test"
    return added


def _scenario(kind, base_dir):
    c = cluster.ReplicatedCluster(kind, base_dir, size=3)
    c.start()
    out = []
    try:
        members = c.members
        eps = [m.endpoint for m in members]
        ids = {}
        for m in members:
            st = m.maint.Status(pb.StatusRequest(), timeout=10)
            ids[m.name] = st.header.member_id
            cluster_id = st.header.cluster_id
            leader_id = st.leader
        leader = [m for m in members if ids[m.name] == leader_id][0]
        follower = [m for m in members if m is not leader][-1]
        l_port, l_port2 = cluster.free_port(), cluster.free_port()
        # Named by role: which member leads differs from run to run.
        role = {leader.name: "leader", follower.name: "follower"}
        role.update({m.name: "other" for m in members if m.name not in role})
        names = {"%x" % ids[m.name]: "<%s>" % role[m.name] for m in members}
        names["%x" % cluster_id] = "<cluster>"
        ports = {str(m.peer_port): "<%s-peer>" % role[m.name] for m in members}
        ports.update({str(m.client_port): "<%s-client>" % role[m.name] for m in members})
        ports.update({str(l_port): "<l1-peer>", str(l_port2): "<l1-peer2>"})

        def norm(text):
            text = re.sub(r" +", " ", text)  # %16x pads short ids with spaces
            for m in members:  # etcdctl prints member names
                text = re.sub(r"\b%s\b" % m.name, role[m.name], text)
            text = re.sub(r"\b[0-9a-f]{8,16}\b", lambda mo: names.get(mo.group(0), "<new>"), text)
            text = re.sub(r"\b\d{4,5}\b", lambda mo: ports.get(mo.group(0), mo.group(0)), text)
            # etcdctl lists the members in id order, and ids follow the ports
            return re.sub(r'ETCD_INITIAL_CLUSTER="([^"]*)"',
                          lambda mo: 'ETCD_INITIAL_CLUSTER="%s"' % ",".join(sorted(mo.group(1).split(","))),
                          text)

        def step(*args, endpoints=eps):
            out.append((norm("$ " + " ".join(args)), norm(_ctl(endpoints, *args))))
            return out[-1][1]

        # endpoint status / health across the cluster: the server's answers,
        # without versions, sizes, indexes and timings.
        for what in ("status", "health"):
            table = norm(_ctl(eps[:1], "endpoint", what, "--cluster", "-w", "table"))
            rows = [[f.strip() for f in line.strip("|").split("|")] for line in table.splitlines()
                    if line.startswith("|")]
            keep = [i for i, h in enumerate(rows[0]) if h in (
                "ENDPOINT", "ID", "IS LEADER", "IS LEARNER", "ERRORS", "HEALTH", "ERROR")]
            out.append(("$ endpoint %s --cluster -w table" % what,
                        [rows[0][i] for i in keep] + sorted(str([r[i] for i in keep]) for r in rows[1:])))
        # A new member needs every voter connected for 5 s ("unhealthy
        # cluster" until then): wait for that.
        got = _ctl_when_healthy(eps, "member", "add", "l1", "--learner", "--peer-urls=http://127.0.0.1:%d" % l_port)
        out.append(("$ member add l1 --learner", norm(got)))
        # (python3-etcd3's protos predate isLearner: etcdctl tells)
        learner = [line.split(",")[0] for line in _ctl(eps, "member", "list").splitlines()
                   if ":%d" % l_port in line][0]
        names[learner] = "<l1>"
        out[-1] = (out[-1][0], norm(got))
        step("member", "add", "l2", "--learner", "--peer-urls=http://127.0.0.1:1")
        step("member", "add", "x", "--peer-urls=http://127.0.0.1:2/path")
        step("member", "add", "x", "--peer-urls=http://127.0.0.1:%d" % follower.peer_port)
        step("member", "promote", learner, endpoints=[leader.endpoint])
        step("member", "promote", "%x" % ids[follower.name])
        step("member", "promote", "1234")
        step("member", "update", learner, "--peer-urls=http://127.0.0.1:%d" % l_port2)
        step("member", "update", learner, "--peer-urls=http://127.0.0.1:%d" % follower.peer_port)
        step("member", "update", "1234", "--peer-urls=http://127.0.0.1:9")
        lines = step("member", "list")
        out[-1] = (out[-1][0], sorted(lines.splitlines()))
        step("member", "remove", learner)
        step("member", "remove", "1234")
        # Removing a started follower: it stops by itself.
        others = [m.endpoint for m in members if m is not follower]
        step("member", "remove", "%x" % ids[follower.name], endpoints=others)
        deadline = time.monotonic() + 20
        while follower.proc.poll() is None:
            assert time.monotonic() < deadline, "the removed member is still running"
            time.sleep(0.2)
        lines = step("member", "list", endpoints=others)
        out[-1] = (out[-1][0], sorted(lines.splitlines()))
        step("put", "after", "removal", endpoints=others)
        return out
    finally:
        c.cleanup()


def test_membership_commands_match_etcd(tmp_path):
    want = _scenario("etcd", tmp_path / "etcd")
    # etcd 3.4's MemberUpdate drops the learner flag (3.5 keeps it, as cairn).
    want = [(cmd, [line.replace("<l1-peer2>, , false", "<l1-peer2>, , true") for line in res])
            if isinstance(res, list) else (cmd, res) for cmd, res in want]
    got = _scenario("cairn", tmp_path / "cairn")
    for w, g in zip(want, got):
        assert g == w
    assert len(got) == len(want)


def _join(kind, base_dir):
    """etcd's "add a member" runbook: member add, start the new member with
    the printed ETCD_* values and --initial-cluster-state existing; it
    catches up and serves.  Returns what a user would look at."""
    import os
    c = cluster.ReplicatedCluster(kind, base_dir, size=3)
    c.start()
    new = cluster.Server(kind, os.path.join(str(base_dir), "m4"), name="m4",
                         extra_args=["--initial-cluster-state", "existing"])
    try:
        eps = [m.endpoint for m in c.members]
        for i in range(50):
            c.members[i % 3].kv.Put(pb.PutRequest(key=b"k%02d" % i, value=b"v%d" % i), timeout=10)
        added = _add_member(eps, new)
        assert 'ETCD_NAME="m4"' in added, added
        new.start()
        got = new.kv.Range(pb.RangeRequest(key=b"k", range_end=b"l", serializable=True), timeout=10)
        values = [(kv.key, kv.value) for kv in got.kvs]
        new.kv.Put(pb.PutRequest(key=b"from-m4", value=b"yes"), timeout=10)
        seen = [m.kv.Range(pb.RangeRequest(key=b"from-m4"), timeout=10).kvs[0].value for m in c.members]
        listed = _ctl([new.endpoint], "member", "list")
        started = sorted(line.split(", ")[1:3] for line in listed.splitlines())
        # Restarted, the member keeps its identity (the flags are ignored now).
        new.restart()
        again = new.kv.Range(pb.RangeRequest(key=b"from-m4"), timeout=10).kvs[0].value
        return {"values": values, "seen": seen, "members": started, "after restart": again}
    finally:
        new.cleanup()
        c.cleanup()


def test_member_joins_an_existing_cluster(tmp_path):
    want = _join("etcd", tmp_path / "etcd")
    assert want["values"] == [(b"k%02d" % i, b"v%d" % i) for i in range(50)]
    assert _join("cairn", tmp_path / "cairn") == want


def _grow(kind, base_dir):
    """docs/operations.md "Grow 3 -> 5": member add and start m4, then m5
    (one at a time); the five then keep serving with two of the original
    members killed."""
    import os
    c = cluster.ReplicatedCluster(kind, base_dir, size=3)
    c.start()
    new = [cluster.Server(kind, os.path.join(str(base_dir), name), name=name,
                          extra_args=["--initial-cluster-state", "existing"])
           for name in ("m4", "m5")]
    try:
        for i in range(30):
            c.members[i % 3].kv.Put(pb.PutRequest(key=b"g%02d" % i, value=b"v%d" % i), timeout=10)
        for m in new:
            _add_member([x.endpoint for x in c.members], m)
            m.start()
        five = c.members + new
        listed = _ctl([m.endpoint for m in five], "member", "list").splitlines()
        out = {"members": sorted(line.split(", ")[1:3] for line in listed)}
        for m in c.members[:2]:
            m.kill9()
        alive = [c.members[2]] + new
        eps = [m.endpoint for m in alive]
        deadline = time.monotonic() + 30
        while True:  # (a new leader first, if a killed member led)
            put = _ctl(eps, "put", "with-two-down", "yes")
            if put == "OK\n" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        out["put with two down"] = put
        got = new[1].kv.Range(pb.RangeRequest(key=b"g", range_end=b"h"), timeout=10)
        out["keys on m5"] = [(kv.key, kv.value) for kv in got.kvs]
        rev = new[1].kv.Range(pb.RangeRequest(key=b"with-two-down"), timeout=10).header.revision
        hashes = set()
        for m in alive:
            deadline = time.monotonic() + 10
            while m.kv.Range(pb.RangeRequest(key=b"x", serializable=True), timeout=10).header.revision < rev:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            hashes.add(m.maint.HashKV(pb.HashKVRequest(revision=rev), timeout=10).hash)
        out["alive members agree"] = len(hashes) == 1
        return out
    finally:
        for m in new:
            m.cleanup()
        c.cleanup()


def test_grow_three_to_five(tmp_path):
    want = _grow("etcd", tmp_path / "etcd")
    assert [s for s, _ in want["members"]] == ["started"] * 5, want
    assert want["put with two down"] == "OK\n" and want["alive members agree"], want
    assert _grow("cairn", tmp_path / "cairn") == want


def _replace(kind, base_dir):
    """docs/operations.md "Replace a dead member": a member's disk is lost
    (kill -9, data dir wiped); member remove it, member add a new one, start
    that with --initial-cluster-state existing.  Returns what a user sees."""
    import os
    import shutil
    c = cluster.ReplicatedCluster(kind, base_dir, size=3)
    c.start()
    new = cluster.Server(kind, os.path.join(str(base_dir), "m4"), name="m4",
                         extra_args=["--initial-cluster-state", "existing"])
    try:
        leader = c.leader()
        m3 = [m for m in c.members if m is not leader][0]  # a follower's disk dies
        m1, m2 = [m for m in c.members if m is not m3]
        for i in range(20):
            m1.kv.Put(pb.PutRequest(key=b"r%02d" % i, value=b"v%d" % i), timeout=10)
        dead = "%x" % m3.maint.Status(pb.StatusRequest(), timeout=10).header.member_id
        m3.kill9()
        shutil.rmtree(m3.data_dir)
        eps = [m1.endpoint, m2.endpoint]
        deadline = time.monotonic() + 30
        while True:
            removed = _ctl(eps, "member", "remove", dead)
            if not removed.startswith("rc="):
                break
            assert time.monotonic() < deadline, removed
            time.sleep(0.5)
        out = [re.sub(r" +", " ", removed.replace(dead, "<dead>").split(" from ")[0])]
        _add_member(eps, new)
        new.start()
        got = new.kv.Range(pb.RangeRequest(key=b"r", range_end=b"s", serializable=True), timeout=10)
        out.append([(kv.key, kv.value) for kv in got.kvs])
        listed = [line.split(", ") for line in _ctl([new.endpoint], "member", "list").splitlines()]
        out.append(sorted(fields[1] for fields in listed))
        out.append(sorted(fields[2] for fields in listed) == sorted([m1.name, m2.name, "m4"]))
        return out
    finally:
        new.cleanup()
        c.cleanup()


def test_replace_a_dead_member(tmp_path):
    want = _replace("etcd", tmp_path / "etcd")
    assert want[1] == [(b"r%02d" % i, b"v%d" % i) for i in range(20)]
    assert _replace("cairn", tmp_path / "cairn") == want


def _remove_leader(kind, base_dir):
    c = cluster.ReplicatedCluster(kind, base_dir, size=3)
    c.start()
    try:
        leader = c.leader()
        lid = "%x" % leader.maint.Status(pb.StatusRequest(), timeout=10).header.member_id
        removed = _ctl_when_healthy([leader.endpoint], "member", "remove", lid)
        deadline = time.monotonic() + 20
        while leader.proc.poll() is None:
            assert time.monotonic() < deadline, "the removed leader is still running"
            time.sleep(0.1)
        others = [m.endpoint for m in c.members if m is not leader]
        listed = _ctl(others, "member", "list").splitlines()
        # (etcd elects the next leader only after a timeout: its first writes
        # may time out; cairn's leader hands over as it leaves)
        deadline = time.monotonic() + 30
        while True:
            put = _ctl(others, "put", "after", "removal")
            if put == "OK\n" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        return [re.sub(r" +", " ", removed.replace(lid, "<leader>")).split(" from ")[0],
                leader.proc.returncode, len(listed), lid in " ".join(listed), put]
    finally:
        c.cleanup()


def test_remove_the_leader(tmp_path):
    """The leader removed through itself: it answers, stops (exit 0), and
    the other two elect a leader and take writes; as on etcd."""
    want = _remove_leader("etcd", tmp_path / "etcd")
    # (etcd's leader stops once it has applied its own removal, racing the
    # answer: configure() in etcdserver selects between the applied change and
    # s.stopping, so etcdctl sometimes prints ErrStopped instead.  cairn always
    # answers before it stops.)
    assert want[0] in ("Member <leader> removed", "rc=1 Error: etcdserver: server stopped"), want
    want[0] = "Member <leader> removed"
    assert _remove_leader("cairn", tmp_path / "cairn") == want


def _learner(kind, base_dir):
    """Add a learner; promote it before it runs (refused: not in sync), start
    it (existing), check what it serves, promote it once it caught up, and
    write through it.  Promotions are asked of a follower, which passes them
    to the leader."""
    import os
    import grpc
    c = cluster.ReplicatedCluster(kind, base_dir, size=3)
    c.start()
    new = cluster.Server(kind, os.path.join(str(base_dir), "l1"), name="l1",
                         extra_args=["--initial-cluster-state", "existing"])
    try:
        eps = [m.endpoint for m in c.members]
        c.members[0].kv.Put(pb.PutRequest(key=b"k", value=b"v"), timeout=10)
        _add_member(eps, new, "--learner")
        lid = [line.split(",")[0] for line in _ctl(eps, "member", "list").splitlines()
               if "l1" in line or ":%d," % new.peer_port in line][0]
        follower = [m for m in c.members if m is not c.leader()][0]
        early = _ctl([follower.endpoint], "member", "promote", lid)
        new.launch()  # (the harness's readiness probe is not served to a learner)
        deadline = time.monotonic() + 30
        while True:
            try:
                new.kv.Range(pb.RangeRequest(key=b"k", serializable=True), timeout=2)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline and new.proc.poll() is None, new.log_tail()
                new._close_channel()  # (a refused channel backs off for seconds)
                time.sleep(0.2)
        out = {"promote before it runs": early.replace(lid, "<l1>")}

        def call(name, fn):
            try:
                fn()
                out[name] = "ok"
            except grpc.RpcError as e:
                out[name] = (e.code(), e.details())

        call("status", lambda: new.maint.Status(pb.StatusRequest(), timeout=10))
        call("serializable get", lambda: new.kv.Range(pb.RangeRequest(key=b"k", serializable=True), timeout=10))
        call("get", lambda: new.kv.Range(pb.RangeRequest(key=b"k"), timeout=10))
        call("put", lambda: new.kv.Put(pb.PutRequest(key=b"x", value=b"y"), timeout=10))
        call("lease grant", lambda: new.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=10), timeout=10))
        call("watch", lambda: next(new.watch.Watch(iter([pb.WatchRequest(
            create_request=pb.WatchCreateRequest(key=b"k"))]), timeout=10)))
        deadline = time.monotonic() + 30
        while True:
            promoted = _ctl([follower.endpoint], "member", "promote", lid)
            if "in sync" not in promoted or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        out["promote"] = re.sub(r" +", " ", promoted.replace(lid, "<l1>")).split(" in ")[0]
        # (the promoted member knows once it has applied the change, a moment
        # after the leader answered)
        deadline = time.monotonic() + 10
        while True:
            call("put after promotion", lambda: new.kv.Put(pb.PutRequest(key=b"x", value=b"y"), timeout=10))
            if "learner" not in str(out["put after promotion"]) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return out
    finally:
        new.cleanup()
        c.cleanup()


def test_learner_serves_little_until_promoted(tmp_path):
    want = _learner("etcd", tmp_path / "etcd")
    assert want["promote"] == "Member <l1> promoted"
    assert _learner("cairn", tmp_path / "cairn") == want


def _move_leader(kind, base_dir):
    """etcdctl move-leader, as an operator runs it before maintenance, and
    MoveLeader's errors."""
    import grpc
    c = cluster.ReplicatedCluster(kind, base_dir, size=3)
    c.start()
    try:
        leader = c.leader()
        ids = {m.name: "%x" % m.maint.Status(pb.StatusRequest(), timeout=10).header.member_id for m in c.members}
        target = [m for m in c.members if m is not leader][0]
        names = {ids[leader.name]: "<leader>", ids[target.name]: "<target>"}

        def norm(text):
            return re.sub(r"\b[0-9a-f]{8,16}\b", lambda mo: names.get(mo.group(0), "<id>"), text)
        eps = [m.endpoint for m in c.members]
        out = [norm(_ctl(eps, "move-leader", ids[target.name]))]
        st = target.maint.Status(pb.StatusRequest(), timeout=10)
        out.append(st.leader == st.header.member_id)
        out.append(norm(_ctl(eps, "move-leader", "1234")))
        try:
            leader.maint.MoveLeader(pb.MoveLeaderRequest(targetID=int(ids[target.name], 16)), timeout=10)
            out.append("ok")
        except grpc.RpcError as e:
            out.append((e.code(), e.details()))  # the old leader is no leader now
        out.append(_ctl(eps, "put", "after", "move"))
        return out
    finally:
        c.cleanup()


def test_move_leader(tmp_path):
    want = _move_leader("etcd", tmp_path / "etcd")
    assert want[0] == "Leadership transferred from <leader> to <target>\n"
    assert _move_leader("cairn", tmp_path / "cairn") == want


def _stop_leader(kind, base_dir):
    c = cluster.ReplicatedCluster(kind, base_dir, size=3)
    c.start()
    try:
        leader = c.leader()
        old = leader.maint.Status(pb.StatusRequest(), timeout=10).header.member_id
        time.sleep(6)  # every voter connected (cairn picks a connected one)
        leader.stop()
        others = [m for m in c.members if m is not leader]
        # At once, without an election timeout: a new leader is there.
        leaders = {m.maint.Status(pb.StatusRequest(), timeout=10).leader for m in others}
        put = _ctl([m.endpoint for m in others], "put", "after", "stop")
        return [len(leaders), old in leaders, 0 in leaders, put]
    finally:
        c.cleanup()


def test_clean_stop_of_the_leader_hands_over(tmp_path):
    """SIGTERM to the leader: it hands leadership over before it exits (etcd's
    TransferLeadership), so the others have a leader the moment it is gone."""
    want = _stop_leader("etcd", tmp_path / "etcd")
    assert want == [1, False, False, "OK\n"]
    assert _stop_leader("cairn", tmp_path / "cairn") == want
