"""A replicated cluster of three members, used as a client would: writes on
any member, reads that see them everywhere, a leader killed with kill -9
while the others keep serving, a member that comes back and catches up, and
identical state (HashKV) on every member.  The same tests run against a real
etcd cluster with CAIRN_TEST_TARGET=etcd."""

import os
import struct
import time

import grpc
import pytest
from etcd3.etcdrpc import rpc_pb2 as pb

import cluster


@pytest.fixture
def three(tmp_path):
    c = cluster.ReplicatedCluster(cluster.TARGET, tmp_path, size=3)
    c.start()
    yield c
    c.cleanup()


def put(member, key, value, timeout=10):
    return member.kv.Put(pb.PutRequest(key=key, value=value), timeout=timeout)


def get(member, key, serializable=False, timeout=10):
    r = member.kv.Range(pb.RangeRequest(key=key, serializable=serializable), timeout=timeout)
    return r.kvs[0].value if r.kvs else None


def retry(fn, timeout=30):
    """fn() until it stops raising gRPC errors (a leader election)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def hashes(members, revision):
    out = {}
    for m in members:
        r = m.maint.HashKV(pb.HashKVRequest(revision=revision), timeout=10)
        out[m.name] = r.hash
    return out


def test_members_and_status(three):
    p = three.members[0].etcdctl("--endpoints", three.endpoints(), "member", "list")
    assert p.returncode == 0, p.stderr
    rows = sorted((line.split(", ") for line in p.stdout.splitlines()), key=lambda r: r[2])
    assert [r[1:4] for r in rows] == [
        ["started", m.name, "http://127.0.0.1:%d" % m.peer_port] for m in three.members]
    assert all(r[4] == "http://127.0.0.1:%d" % m.client_port and r[5] == "false"
               for r, m in zip(rows, three.members))
    statuses = three.statuses()
    leaders = {st.leader for st in statuses}
    assert len(leaders) == 1 and 0 not in leaders
    assert sum(st.header.member_id == st.leader for st in statuses) == 1
    assert len({st.header.cluster_id for st in statuses}) == 1
    assert len({st.raftTerm for st in statuses}) == 1


def test_writes_on_any_member_are_seen_everywhere(three):
    a, b, c = three.members
    revs = []
    for i, m in enumerate((a, b, c, a, b, c)):
        revs.append(put(m, b"/k%d" % i, b"v%d" % i).header.revision)
    assert revs == sorted(revs) and len(set(revs)) == len(revs)
    # Linearizable reads on every member see every acknowledged write.
    for m in three.members:
        for i in range(6):
            assert get(m, b"/k%d" % i) == b"v%d" % i
    # A watch on one member sees the writes made through the others, in order.
    w = cluster.WatchStream(c, pb.WatchCreateRequest(key=b"/w/", range_end=b"/w0"))
    try:
        w.next_response()  # created
        for i in range(5):
            put((a, b)[i % 2], b"/w/%d" % i, b"x")
        events = w.collect_events(lambda ev: ev.kv.key == b"/w/4")
        assert [e.kv.key for e in events] == [b"/w/%d" % i for i in range(5)]
        mods = [e.kv.mod_revision for e in events]
        assert mods == sorted(mods)
    finally:
        w.close()
    rev = c.revision()
    h = retry(lambda: hashes(three.members, rev))
    assert len(set(h.values())) == 1, h


def test_leader_killed_then_back(three):
    leader = three.leader()
    followers = [m for m in three.members if m is not leader]
    for i in range(20):
        put(followers[i % 2], b"/before/%d" % i, b"1")
    leader.kill9()
    # The two others elect a leader and keep taking writes.
    new_leader = three.leader(exclude=leader)
    assert new_leader is not leader
    acked = []
    for i in range(20):
        retry(lambda i=i: put(followers[i % 2], b"/during/%d" % i, b"2"))
        acked.append(b"/during/%d" % i)
    leader.start()  # same data dir, same flags: it rejoins and catches up
    for key in acked:
        assert get(leader, key) == b"2"
    for i in range(20):
        assert get(leader, b"/before/%d" % i) == b"1"
    rev = followers[0].revision()
    h = retry(lambda: hashes(three.members, rev))
    assert len(set(h.values())) == 1, h


def test_a_lone_member_serves_no_linearizable_read(three):
    a, b, c = three.members
    put(a, b"/lone", b"1")
    b.kill9()
    c.kill9()
    # No quorum: a linearizable read cannot be confirmed (etcd: a timeout),
    # while a serializable one is answered from the member's own state.
    with pytest.raises(grpc.RpcError) as e:
        a.kv.Range(pb.RangeRequest(key=b"/lone"), timeout=3)
    assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert get(a, b"/lone", serializable=True) == b"1"
    with pytest.raises(grpc.RpcError):
        put(a, b"/lone", b"2", timeout=3)
    b.start()
    assert retry(lambda: get(a, b"/lone")) in (b"1", b"2")


def test_lease_expires_once_on_every_member(three):
    a, b, c = three.members
    lease = b.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=3), timeout=10)
    b.kv.Put(pb.PutRequest(key=b"/leased", value=b"x", lease=lease.ID), timeout=10)
    for m in three.members:
        assert get(m, b"/leased") == b"x"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(get(m, b"/leased") for m in three.members):
        time.sleep(0.2)
    assert all(get(m, b"/leased") is None for m in three.members)
    r = c.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lease.ID), timeout=10)
    assert r.TTL == -1


def test_ids_are_etcds(tmp_path):
    """The same flags give the same member and cluster ids on cairn as on
    etcd (etcdctl member list, Status headers)."""
    if cluster.TARGET != "cairn":
        pytest.skip("compares cairn with etcd")
    c = cluster.ReplicatedCluster("etcd", tmp_path / "etcd", size=3, token="ids-token")
    c.start()
    try:
        want = sorted((st.header.member_id, st.header.cluster_id) for st in c.statuses())
    finally:
        c.cleanup()
    for m in c.members:  # the same ports and URLs, now cairn
        m.kind = "cairn"
        m.data_dir = m.data_dir + "-cairn"
    c.start()
    try:
        got = sorted((st.header.member_id, st.header.cluster_id) for st in c.statuses())
    finally:
        c.cleanup()
    assert got == want


def test_follower_behind_the_log_gets_a_snapshot(tmp_path):
    """A member down while the others write more than the log keeps
    (--snapshot-count) catches up from a snapshot of the leader's database,
    then from the log; its watchers see every revision once, in order."""
    if cluster.TARGET != "cairn":
        pytest.skip("cairn's log retention flags")
    c = cluster.ReplicatedCluster("cairn", tmp_path, size=3, extra_args=[
        "--snapshot-count", "100", "--experimental-log-segment-bytes", "65536", "--log-level", "info"])
    c.start()
    try:
        a, b, lagging = c.members
        put(a, b"/s/first", b"1")
        lagging.kill9()
        # (Killing the leader means an election: a put then may time out;
        # a retried put of the same value changes nothing the test reads.)
        for i in range(1500):
            retry(lambda i=i: put((a, b)[i % 2], b"/s/%05d" % i, b"v" * 200))
        lagging.start()
        for i in (0, 777, 1499):
            assert get(lagging, b"/s/%05d" % i, serializable=True) == b"v" * 200
        assert "installed the leader's snapshot" in lagging.log_tail(200000)
        put(b, b"/s/after", b"2")
        assert retry(lambda: get(lagging, b"/s/after")) == b"2"
        # History survived the install: a watch from revision 1 on the
        # member that installed it sees every revision once, in order.
        w = cluster.WatchStream(lagging, pb.WatchCreateRequest(
            key=b"/s/", range_end=b"/s0", start_revision=1))
        try:
            w.next_response()
            events = w.collect_events(lambda ev: ev.kv.key == b"/s/after")
        finally:
            w.close()
        revs = [e.kv.mod_revision for e in events]
        assert revs == sorted(set(revs)) and len(revs) >= 1502
        assert {e.kv.key for e in events} == {b"/s/first", b"/s/after"} | {
            b"/s/%05d" % i for i in range(1500)}
        rev = b.revision()
        h = retry(lambda: hashes(c.members, rev))
        assert len(set(h.values())) == 1, h
        lagging.restart()  # from the installed state
        assert get(lagging, b"/s/after") == b"2"
    finally:
        c.cleanup()


def _status(member):
    """etcdctl's view of Status (the python stubs predate some fields)."""
    import json
    p = member.etcdctl("endpoint", "status", "-w", "json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)[0]["Status"]


def _leaderless_answers(kind, base):
    """What a member without a quorum answers, normalized for comparison."""
    c = cluster.ReplicatedCluster(kind, base, size=3)
    c.start()
    try:
        a, b, d = c.members
        put(a, b"/x", b"1")
        st = _status(a)
        shape = {
            "fields": sorted(k for k in st if k != "version"),
            "header": sorted(st["header"]),
            "leader_known": st.get("leader", 0) != 0,
            "applied": st.get("raftAppliedIndex", 0) > 0 and st.get("raftIndex", 0) > 0,
        }
        b.kill9()
        d.kill9()
        deadline = time.monotonic() + 20
        while True:  # until a notices it has no leader (check quorum)
            st = _status(a)
            if st.get("leader", 0) == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        out = {"shape": shape, "status_leader": st.get("leader", 0),
               "status_errors": st.get("errors", [])}
        for name, call in (
                ("put", lambda: a.kv.Put(pb.PutRequest(key=b"/x", value=b"2"), timeout=20)),
                ("get", lambda: a.kv.Range(pb.RangeRequest(key=b"/x"), timeout=20))):
            try:
                call()
                out[name] = "ok"
            except grpc.RpcError as e:
                out[name] = (e.code(), e.details())
        out["sget"] = get(a, b"/x", serializable=True)
        return out
    finally:
        c.cleanup()


def test_leaderless_member_answers_as_etcd(tmp_path):
    """Status of a healthy member and what a member cut off from its quorum
    answers (Status errors, a write, a linearizable and a serializable read),
    on etcd and on cairn side by side."""
    if cluster.TARGET != "cairn":
        pytest.skip("compares cairn with etcd")
    want = _leaderless_answers("etcd", tmp_path / "etcd")
    got = _leaderless_answers("cairn", tmp_path / "cairn")
    assert got == want


def test_hasleader_metadata(three):
    """clientv3.WithRequireLeader: a call with "hasleader: true" on a member
    without a leader is answered "etcdserver: no leader" at once."""
    a, b, c = three.members
    md = (("hasleader", "true"),)
    assert a.kv.Range(pb.RangeRequest(key=b"/x", serializable=True), metadata=md, timeout=10)
    b.kill9()
    c.kill9()
    deadline = time.monotonic() + 20
    while a.maint.Status(pb.StatusRequest(), timeout=10).leader != 0:
        assert time.monotonic() < deadline, "still sees a leader"
        time.sleep(0.2)
    with pytest.raises(grpc.RpcError) as e:
        a.kv.Range(pb.RangeRequest(key=b"/x", serializable=True), metadata=md, timeout=10)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
    # Without the metadata a serializable read is still served.
    a.kv.Range(pb.RangeRequest(key=b"/x", serializable=True), timeout=10)


def _varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def test_peer_port_refuses_strangers(three):
    """Garbage on the peer port, a peer of another cluster and a batch for
    another member are refused (and logged), never a crash; the cluster goes
    on serving."""
    import socket
    if cluster.TARGET != "cairn":
        pytest.skip("cairn's own peer protocol")
    a, b, c = three.members
    # Bytes that are not HTTP/2 at all.
    with socket.create_connection(("127.0.0.1", a.peer_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 16)
        s.settimeout(5)
        try:
            s.recv(1024)
        except OSError:
            pass
    st = a.maint.Status(pb.StatusRequest(), timeout=10)
    ch = grpc.insecure_channel("127.0.0.1:%d" % a.peer_port)
    stream = ch.stream_unary("/cairnpb.Peer/Stream", request_serializer=lambda x: x,
                             response_deserializer=lambda x: x)
    # PeerBatch{cluster_id: 12345, from: 7, to: a's id}: another cluster.
    other_cluster = b"\x08" + _varint(12345) + b"\x10\x07\x18" + _varint(st.header.member_id)
    with pytest.raises(grpc.RpcError) as e:
        stream(iter([other_cluster]), timeout=10)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                   "cluster ID mismatch")
    # The right cluster, but addressed to a member that is not this one.
    wrong_member = b"\x08" + _varint(st.header.cluster_id) + b"\x10\x07\x18\x09"
    with pytest.raises(grpc.RpcError) as e:
        stream(iter([wrong_member]), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Bytes that are not a PeerBatch end the stream (gRPC C++ reports a
    # message that does not parse as the end of the client's stream).
    try:
        stream(iter([b"\xff" * 16]), timeout=10)
    except grpc.RpcError:
        pass
    ch.close()
    # The raw peer stream (src/peer/peer_stream.h), as a member dials it.
    magic = b"\0CAIRNP1"
    reply = _raw_peer_stream(a.peer_port, magic + _frame(1, other_cluster))
    assert _frames(reply) == [(2, b"\x08\x09\x12\x13cluster ID mismatch")]  # StreamRefusal
    assert _frames(_raw_peer_stream(a.peer_port, magic + _frame(1, wrong_member)))[0][1].startswith(
        b"\x08\x09")  # FAILED_PRECONDITION
    for garbage in (b"\xff" * 64,                                   # not a frame header
                    _frame(1, b"\xff" * 16),                        # not a PeerBatch
                    struct.pack("<II", 1 << 30, 1) + struct.pack("<I", _crc32c(
                        struct.pack("<II", 1 << 30, 1))),           # a frame of 1 GiB
                    magic[:4]):                                     # half the magic, then EOF
        data = garbage if garbage == magic[:4] else magic + garbage
        assert _raw_peer_stream(a.peer_port, data) == b"", garbage
    assert "refused a peer of another cluster" in a.log_tail(100000) or a.kind != "cairn"
    put(a, b"/after-strangers", b"ok")
    assert get(c, b"/after-strangers") == b"ok"
    assert a.alive() and b.alive() and c.alive()


def test_members_talk_on_raw_peer_streams(three):
    """On http:// peer URLs Raft traffic runs on the raw peer stream, not on
    gRPC: a member has one reader thread per member that dialed it (a
    thread per connection, one connection per sending member, dialed when
    it first has something to say). Followers talk only to the leader: the
    leader reads two streams, each follower one, unless the first election
    was contested (two candidates each dialed every member: CI saw [2, 2, 2]
    once); never more than one stream per other member."""
    if cluster.TARGET != "cairn":
        pytest.skip("cairn's own peer protocol")
    a, b, c = three.members
    put(a, b"/raw", b"1")
    deadline = time.monotonic() + 10
    while True:
        counts = []
        for m in three.members:
            names = []
            for tid in os.listdir("/proc/%d/task" % m.pid):
                try:
                    with open("/proc/%d/task/%s/comm" % (m.pid, tid)) as f:
                        names.append(f.read().strip())
                except OSError:
                    pass  # a thread that just ended
            counts.append(names.count("cairn-peer-recv"))
        if sorted(counts) == [1, 1, 2] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert all(1 <= n <= 2 for n in counts), counts
    assert counts[three.members.index(three.leader())] == 2


def _crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _frame(kind, payload):
    head = struct.pack("<II", len(payload), kind)
    return head + struct.pack("<I", _crc32c(head)) + payload


def _frames(data):
    out = []
    while len(data) >= 12:
        n, kind, crc = struct.unpack("<III", data[:12])
        assert crc == _crc32c(data[:8])
        out.append((kind, data[12:12 + n]))
        data = data[12 + n:]
    return out


def _raw_peer_stream(port, data):
    """Sends `data` on a fresh connection to a peer port, half-closes, and
    returns what came back before the member closed or reset it (10 s at
    most)."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:  # closed with our garbage unread
                return got
            if not chunk:
                return got
            got += chunk


def _metrics(member):
    """{(name, labels-text): value} from a member's /metrics."""
    import urllib.request
    with urllib.request.urlopen(member.endpoint + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        out[(name, labels.rstrip("}"))] = float(value)
    return out


def test_cluster_metrics(three):
    """etcd's cluster metrics, as the seeds' alerts read them: leader
    gauges, bytes to and from each peer, the peer round-trip histogram (per
    To), and the failure counters of a member that lost its quorum: a write
    that timed out counts in proposals_failed_total, a linearizable read that
    timed out in slow_read_indexes_total."""
    put(three.members[0], b"/m", b"1")
    ids = {m.name: "%x" % m.maint.Status(pb.StatusRequest(), timeout=10).header.member_id
           for m in three.members}
    leader = [m for m in three.members if _metrics(m)[("etcd_server_is_leader", "")] == 1]
    assert len(leader) == 1
    a = leader[0]
    b, c = [m for m in three.members if m is not a]
    deadline = time.monotonic() + 40
    while True:
        m = _metrics(a)
        rtt = {p.name: m.get(("etcd_network_peer_round_trip_time_seconds_count", 'To="%s"' % ids[p.name]), 0)
               for p in (b, c)}
        if all(v > 0 for v in rtt.values()):
            break
        assert time.monotonic() < deadline, "no round trip measured: %r" % rtt
        time.sleep(0.5)
    assert m[("etcd_server_has_leader", "")] == 1
    for p in (b, c):
        # The leader sends to and hears from every follower.
        assert m[("etcd_network_peer_sent_bytes_total", 'To="%s"' % ids[p.name])] > 0
        assert m[("etcd_network_peer_received_bytes_total", 'From="%s"' % ids[p.name])] > 0
        # etcd's buckets: 0.0001 s doubling, 16 of them (the last 3.2768 s).
        assert ("etcd_network_peer_round_trip_time_seconds_bucket",
                'To="%s",le="3.2768"' % ids[p.name]) in m
    before = _metrics(a)
    b.kill9()
    c.kill9()
    with pytest.raises(grpc.RpcError):
        put(a, b"/m", b"2", timeout=30)
    with pytest.raises(grpc.RpcError):
        get(a, b"/m", timeout=30)
    after = _metrics(a)
    assert after[("etcd_server_proposals_failed_total", "")] > before[("etcd_server_proposals_failed_total", "")]
    assert after[("etcd_server_slow_read_indexes_total", "")] + \
        after[("etcd_server_read_indexes_failed_total", "")] > \
        before[("etcd_server_slow_read_indexes_total", "")] + before[("etcd_server_read_indexes_failed_total", "")]


def test_nospace_alarm_reaches_every_member(tmp_path):
    """A member over its backend quota raises NOSPACE through the log: every
    member then lists the same alarm and refuses writes, deletes still work,
    and a disarm on any member (after delete, compact, defrag) lifts it for
    all.  etcd's behaviour, checked against a real etcd cluster too."""
    from test_bad_input import QUOTA, NOSPACE_MSG, _fill_until_nospace
    c = cluster.ReplicatedCluster(cluster.TARGET, tmp_path, size=3,
                                  extra_args=["--quota-backend-bytes", str(QUOTA)])
    c.start()
    try:
        a, b, d = c.members
        _fill_until_nospace(a)
        nospace = (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE_MSG)
        ids = {m.maint.Status(pb.StatusRequest(), timeout=10).header.member_id for m in c.members}
        for m in c.members:
            # (On etcd every member that applies a put over its own quota
            # raises one too, so there may be up to three.)
            alarms = retry(lambda: m.maint.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET), timeout=10)).alarms
            assert alarms and {x.alarm for x in alarms} == {pb.NOSPACE}, m.name
            assert {x.memberID for x in alarms} <= ids
            with pytest.raises(grpc.RpcError) as e:
                put(m, b"/small", b"x")
            assert (e.value.code(), e.value.details()) == nospace, m.name
        assert b.kv.DeleteRange(pb.DeleteRangeRequest(key=b"fill/000000"), timeout=10).deleted == 1
        # The recovery an operator runs, on another member than the one that filled up.
        assert b.etcdctl("del", "--prefix", "fill/").returncode == 0
        rev = b.kv.Range(pb.RangeRequest(key=b"x"), timeout=10).header.revision
        assert b.etcdctl("compact", str(rev)).returncode == 0
        for m in c.members:
            assert m.etcdctl("defrag").returncode == 0
        p = d.etcdctl("alarm", "disarm")
        assert p.returncode == 0 and "alarm:NOSPACE" in p.stdout
        for m in c.members:
            retry(lambda: put(m, b"/small", b"ok"))
            assert m.etcdctl("alarm", "list").stdout == ""
    finally:
        c.cleanup()


def test_five_members_serve_with_two_down(tmp_path):
    """A 5-member cluster keeps taking writes and serving linearizable reads
    with two members killed (-9), and the two catch up when they return."""
    c = cluster.ReplicatedCluster(cluster.TARGET, tmp_path, size=5)
    c.start()
    try:
        members = c.members
        put(members[0], b"/five", b"before")
        leader = c.leader()
        down = [m for m in members if m is not leader][:2]
        for m in down:
            m.kill9()
        alive = [m for m in members if m not in down]
        for i, m in enumerate(alive):
            retry(lambda: put(m, b"/five/%d" % i, b"v"))
        for m in alive:
            assert retry(lambda: get(m, b"/five/2")) == b"v", m.name
        for m in down:
            m.start()
        rev = retry(lambda: alive[0].kv.Range(pb.RangeRequest(key=b"/five"), timeout=10)).header.revision
        deadline = time.monotonic() + 30
        while True:
            try:
                h = hashes(members, rev)
                if len(set(h.values())) == 1:
                    break
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, "members differ at revision %d" % rev
            time.sleep(0.2)
    finally:
        c.cleanup()
