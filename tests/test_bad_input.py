"""Bad requests and resource limits over raw gRPC; codes and messages are the
ones etcd 3.4.23 returns (found by running it)."""

import os

import grpc
import pytest
from etcd3.etcdrpc import rpc_pb2 as pb

from cluster import WatchStream

INVALID = grpc.StatusCode.INVALID_ARGUMENT
OUT_OF_RANGE = grpc.StatusCode.OUT_OF_RANGE
NOT_FOUND = grpc.StatusCode.NOT_FOUND
NOSPACE_MSG = "etcdserver: mvcc: database space exceeded"
PUT = 0  # mvccpb.Event.PUT


def rpc_error(fn, *args, **kw):
    kw.setdefault("timeout", 30)
    try:
        r = fn(*args, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()
    raise AssertionError("expected a gRPC error, got:\n%s" % r)


def put_op(k, v=b"x", **kw):
    return pb.RequestOp(request_put=pb.PutRequest(key=k, value=v, **kw))


def test_empty_key(cairn):
    kv = cairn.kv
    msg = (INVALID, "etcdserver: key is not provided")
    assert rpc_error(kv.Put, pb.PutRequest(key=b"", value=b"v")) == msg
    assert rpc_error(kv.Range, pb.RangeRequest(key=b"")) == msg
    assert rpc_error(kv.Range, pb.RangeRequest(key=b"", range_end=b"z")) == msg
    assert rpc_error(kv.DeleteRange, pb.DeleteRangeRequest(key=b"")) == msg
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[put_op(b"")])) == msg
    assert rpc_error(kv.Txn, pb.TxnRequest(compare=[pb.Compare(key=b"")])) == msg
    # nothing was written
    assert cairn.revision() == 1


def test_put_flag_errors(cairn):
    kv = cairn.kv
    assert rpc_error(kv.Put, pb.PutRequest(key=b"k", ignore_value=True)) == \
        (INVALID, "etcdserver: key not found")
    assert rpc_error(kv.Put, pb.PutRequest(key=b"k", value=b"v", ignore_value=True)) == \
        (INVALID, "etcdserver: value is provided")
    assert rpc_error(kv.Put, pb.PutRequest(key=b"k", lease=5, ignore_lease=True)) == \
        (INVALID, "etcdserver: lease is provided")
    kv.Put(pb.PutRequest(key=b"k", value=b"v1"), timeout=10)
    r = kv.Put(pb.PutRequest(key=b"k", ignore_value=True, prev_kv=True), timeout=10)
    assert r.prev_kv.value == b"v1"
    assert kv.Range(pb.RangeRequest(key=b"k"), timeout=10).kvs[0].version == 2
    # an empty RequestOp inside a txn
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[pb.RequestOp()])) == \
        (INVALID, "etcdserver: key not found")


def test_request_too_large(server_factory):
    srv = server_factory(extra_args=["--max-request-bytes", "1024"])
    kv = srv.kv
    kv.Put(pb.PutRequest(key=b"small", value=b"x" * 200), timeout=10)
    too_large = (INVALID, "etcdserver: request is too large")
    assert rpc_error(kv.Put, pb.PutRequest(key=b"big", value=b"x" * 2048)) == too_large
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[put_op(b"big", b"x" * 2048)])) == too_large
    # Far beyond the limit the gRPC transport itself refuses the message
    # (etcd: max-request-bytes + 512 KiB; gRPC-go's wording is
    # "grpc: received message larger than max (N vs. M)", gRPC C++ says
    # "Received message larger than max (N vs. M)"): code only + wording.
    code, details = rpc_error(kv.Put, pb.PutRequest(key=b"huge", value=b"x" * (1 << 20)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in details.lower(), details
    assert kv.Range(pb.RangeRequest(key=b"big"), timeout=10).count == 0
    assert kv.Range(pb.RangeRequest(key=b"small"), timeout=10).count == 1


def test_too_many_txn_ops(server_factory):
    srv = server_factory(extra_args=["--max-txn-ops", "4"])
    kv = srv.kv
    msg = (INVALID, "etcdserver: too many operations in txn request")
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[put_op(b"t%d" % i) for i in range(5)])) == msg
    assert rpc_error(kv.Txn, pb.TxnRequest(failure=[put_op(b"t%d" % i) for i in range(5)])) == msg
    assert rpc_error(kv.Txn, pb.TxnRequest(
        compare=[pb.Compare(key=b"c%d" % i, target=pb.Compare.VERSION) for i in range(5)])) == msg
    # nested txn: its budget is what the outer level left over
    nested = pb.RequestOp(request_txn=pb.TxnRequest(success=[put_op(b"u%d" % i) for i in range(3)]))
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[put_op(b"t0"), put_op(b"t1"), nested])) == msg
    r = kv.Txn(pb.TxnRequest(success=[put_op(b"t%d" % i) for i in range(4)]), timeout=10)
    assert r.succeeded and len(r.responses) == 4


def test_default_max_txn_ops_is_128(cairn):
    kv = cairn.kv
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[put_op(b"t%03d" % i) for i in range(129)])) == \
        (INVALID, "etcdserver: too many operations in txn request")
    r = kv.Txn(pb.TxnRequest(success=[put_op(b"t%03d" % i) for i in range(128)]), timeout=30)
    assert r.succeeded and r.header.revision == 2


def test_duplicate_keys_in_txn(cairn):
    kv = cairn.kv
    msg = (INVALID, "etcdserver: duplicate key given in txn request")
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[put_op(b"a"), put_op(b"a")])) == msg
    dr = pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"a", range_end=b"c"))
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[dr, put_op(b"b")])) == msg
    nested = pb.RequestOp(request_txn=pb.TxnRequest(success=[put_op(b"a")]))
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[put_op(b"a"), nested])) == msg
    # the same key in success and failure is fine, and so is range + put
    rng = pb.RequestOp(request_range=pb.RangeRequest(key=b"a"))
    r = kv.Txn(pb.TxnRequest(success=[put_op(b"a"), rng], failure=[put_op(b"a")]), timeout=10)
    assert r.succeeded
    # nested then/else may put the same key
    nested = pb.RequestOp(request_txn=pb.TxnRequest(success=[put_op(b"n")], failure=[put_op(b"n")]))
    assert kv.Txn(pb.TxnRequest(success=[nested]), timeout=10).succeeded


def test_lease_errors(cairn):
    kv, ls = cairn.kv, cairn.lease
    nf = (NOT_FOUND, "etcdserver: requested lease not found")
    assert rpc_error(kv.Put, pb.PutRequest(key=b"k", value=b"v", lease=0x999)) == nf
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[put_op(b"k", lease=0x999)])) == nf
    assert rpc_error(ls.LeaseRevoke, pb.LeaseRevokeRequest(ID=0x999)) == nf
    assert rpc_error(ls.LeaseRevoke, pb.LeaseRevokeRequest(ID=0)) == nf
    ttl = ls.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=0x999, keys=True), timeout=10)
    assert ttl.ID == 0x999 and ttl.TTL == -1 and ttl.grantedTTL == 0 and list(ttl.keys) == []
    assert rpc_error(ls.LeaseGrant, pb.LeaseGrantRequest(TTL=9000000001)) == \
        (OUT_OF_RANGE, "etcdserver: too large lease TTL")
    ls.LeaseGrant(pb.LeaseGrantRequest(TTL=100, ID=0x999), timeout=10)
    assert rpc_error(ls.LeaseGrant, pb.LeaseGrantRequest(TTL=100, ID=0x999)) == \
        (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: lease already exists")
    assert cairn.revision() == 1


def test_range_revision_errors(cairn):
    kv = cairn.kv
    for i in range(4):
        kv.Put(pb.PutRequest(key=b"r", value=b"%d" % i), timeout=10)    # revs 2..5
    future = (OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
    compacted = (OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    assert rpc_error(kv.Range, pb.RangeRequest(key=b"r", revision=6)) == future
    assert kv.Range(pb.RangeRequest(key=b"r", revision=5), timeout=10).kvs[0].value == b"3"
    assert rpc_error(kv.Compact, pb.CompactionRequest(revision=6)) == future
    kv.Compact(pb.CompactionRequest(revision=3), timeout=10)
    assert rpc_error(kv.Range, pb.RangeRequest(key=b"r", revision=2)) == compacted
    assert kv.Range(pb.RangeRequest(key=b"r", revision=3), timeout=10).kvs[0].value == b"1"
    assert rpc_error(kv.Compact, pb.CompactionRequest(revision=3)) == compacted
    assert rpc_error(kv.Compact, pb.CompactionRequest(revision=2)) == compacted
    rng = pb.RequestOp(request_range=pb.RangeRequest(key=b"r", revision=2))
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[rng])) == compacted
    rng = pb.RequestOp(request_range=pb.RangeRequest(key=b"r", revision=9))
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[rng])) == future


QUOTA = 2 * 1024 * 1024     # etcd 3.4 reaches NOSPACE after ~2 MiB of 64 KiB values


def _fill_until_nospace(srv, limit_bytes=40 * QUOTA):
    written = 0
    i = 0
    while written < limit_bytes:
        try:
            srv.kv.Put(pb.PutRequest(key=b"fill/%06d" % i, value=os.urandom(65536)), timeout=30)
        except grpc.RpcError as e:
            assert (e.code(), e.details()) == (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE_MSG)
            return i
        written += 65536
        i += 1
    raise AssertionError("no NOSPACE after writing %d bytes with --quota-backend-bytes=%d"
                         % (written, QUOTA))


def test_quota_nospace(server_factory):
    srv = server_factory(extra_args=["--quota-backend-bytes", str(QUOTA)])
    n = _fill_until_nospace(srv)
    assert n > 0, "the very first write already failed"
    kv = srv.kv
    nospace = (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE_MSG)
    # writes fail ...
    assert rpc_error(kv.Put, pb.PutRequest(key=b"small", value=b"x")) == nospace
    assert rpc_error(kv.Txn, pb.TxnRequest(success=[put_op(b"small")])) == nospace
    assert rpc_error(srv.lease.LeaseGrant, pb.LeaseGrantRequest(TTL=60)) == nospace
    # ... reads, read-only txns and deletes still work
    r = kv.Range(pb.RangeRequest(key=b"fill/", range_end=b"fill0", count_only=True), timeout=30)
    assert r.count == n
    rng = pb.RequestOp(request_range=pb.RangeRequest(key=b"fill/000000"))
    assert kv.Txn(pb.TxnRequest(success=[rng]), timeout=30).responses[0].response_range.count == 1
    assert kv.DeleteRange(pb.DeleteRangeRequest(key=b"fill/000000"), timeout=30).deleted == 1
    # the alarm is visible over gRPC and in etcdctl (note etcdctl's trailing space)
    alarms = srv.maint.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET), timeout=30).alarms
    assert [a.alarm for a in alarms] == [pb.NOSPACE]
    member_id = alarms[0].memberID
    assert member_id == srv.maint.Status(pb.StatusRequest(), timeout=10).header.member_id
    p = srv.etcdctl("alarm", "list")
    assert p.returncode == 0 and p.stdout == "memberID:%d alarm:NOSPACE \n" % member_id
    p = srv.etcdctl("put", "x", "y")
    assert p.returncode != 0
    assert p.stderr.splitlines()[-1] == "Error: " + NOSPACE_MSG


def test_quota_alarm_persists_and_recovers(server_factory):
    srv = server_factory(extra_args=["--quota-backend-bytes", str(QUOTA)])
    _fill_until_nospace(srv)
    srv.restart()
    # the alarm survives a restart
    p = srv.etcdctl("alarm", "list")
    assert "alarm:NOSPACE" in p.stdout
    assert rpc_error(srv.kv.Put, pb.PutRequest(key=b"x", value=b"y")) == \
        (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE_MSG)
    # the documented recovery: delete, compact, defrag, disarm
    assert srv.etcdctl("del", "--prefix", "fill/").returncode == 0
    rev = srv.revision()
    assert srv.etcdctl("compact", str(rev)).stdout == "compacted revision %d\n" % rev
    p = srv.etcdctl("defrag")
    assert p.returncode == 0
    assert p.stdout == "Finished defragmenting etcd member[%s]\n" % srv.endpoint
    p = srv.etcdctl("alarm", "disarm")
    assert p.returncode == 0 and "alarm:NOSPACE" in p.stdout
    assert srv.etcdctl("alarm", "list").stdout == ""
    assert srv.etcdctl("put", "x", "y").stdout == "OK\n"


def test_compact_zero_once(cairn):
    # etcd's compacted revision starts at -1: Compact(0) succeeds once on a
    # fresh store, then it is "compacted" like any revision at or below it.
    kv = cairn.kv
    kv.Compact(pb.CompactionRequest(revision=0), timeout=10)
    compacted = (OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    assert rpc_error(kv.Compact, pb.CompactionRequest(revision=0)) == compacted
    cairn.restart()
    assert rpc_error(cairn.kv.Compact, pb.CompactionRequest(revision=0)) == compacted


def test_watch_request_that_is_not_a_message(cairn):
    """Bytes that do not parse as a WatchRequest end that stream with
    INTERNAL and etcd's (grpc-go's) message; the server goes on serving."""
    call = cairn.channel().stream_stream(
        "/etcdserverpb.Watch/Watch",
        request_serializer=lambda b: b, response_deserializer=lambda b: b)
    # Field 1 (create_request) claims 100 bytes but the message ends.
    stream = call(iter([b"\x0a\x64\x0a"]), timeout=10)
    with pytest.raises(grpc.RpcError) as e:
        for _ in stream:
            pass
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert e.value.details().startswith("grpc: failed to unmarshal the received message")
    cairn.kv.Put(pb.PutRequest(key=b"after", value=b"ok"), timeout=10)
    assert cairn.kv.Range(pb.RangeRequest(key=b"after"), timeout=10).kvs[0].value == b"ok"


def test_watch_from_the_compacted_revision(cairn):
    """etcd cancels a watch only when it starts below the compacted revision
    (mvcc watcherGroup.chooseAll: minRev < compactRev). From the compacted
    revision itself it is served, with that revision's puts (their versions
    survive the compaction) but not its deletes."""
    kv = cairn.kv
    kv.Put(pb.PutRequest(key=b"/w/a", value=b"1"), timeout=10)       # rev 2
    kv.DeleteRange(pb.DeleteRangeRequest(key=b"/w/a"), timeout=10)   # rev 3
    kv.Put(pb.PutRequest(key=b"/w/b", value=b"2"), timeout=10)       # rev 4
    kv.Compact(pb.CompactionRequest(revision=4), timeout=10)
    prefix = dict(key=b"/w/", range_end=b"/w0")

    below = WatchStream(cairn, pb.WatchCreateRequest(start_revision=3, **prefix), timeout=30)
    assert below.next_response().created
    r = below.next_response()
    assert r.canceled and r.compact_revision == 4 and not r.events
    below.close()

    at = WatchStream(cairn, pb.WatchCreateRequest(start_revision=4, **prefix), timeout=30)
    assert at.next_response().created
    kv.Put(pb.PutRequest(key=b"/w/c", value=b"3"), timeout=10)       # rev 5
    events = at.collect_events(lambda ev: ev.kv.key == b"/w/c", timeout=10)
    assert [(ev.type, ev.kv.key, ev.kv.mod_revision) for ev in events] == \
        [(PUT, b"/w/b", 4), (PUT, b"/w/c", 5)]
    assert not any(r.canceled for r in at.responses)
    at.close()

    # The same after a compaction at a delete: nothing of that revision, no cancel.
    kv.DeleteRange(pb.DeleteRangeRequest(key=b"/w/c"), timeout=10)   # rev 6
    kv.Compact(pb.CompactionRequest(revision=6), timeout=10)
    at_delete = WatchStream(cairn, pb.WatchCreateRequest(start_revision=6, **prefix), timeout=30)
    assert at_delete.next_response().created
    kv.Put(pb.PutRequest(key=b"/w/d", value=b"4"), timeout=10)       # rev 7
    events = at_delete.collect_events(lambda ev: ev.kv.key == b"/w/d", timeout=10)
    assert [(ev.kv.key, ev.kv.mod_revision) for ev in events] == [(b"/w/d", 7)]
    at_delete.close()


# Unary methods of etcd 3.4 with the name of their request message.
UNARY_METHODS = [
    "KV/Range", "KV/Put", "KV/DeleteRange", "KV/Txn", "KV/Compact",
    "Lease/LeaseGrant", "Lease/LeaseRevoke", "Lease/LeaseTimeToLive", "Lease/LeaseLeases",
    "Maintenance/Alarm", "Maintenance/Status", "Maintenance/Defragment", "Maintenance/Hash",
    "Maintenance/HashKV", "Cluster/MemberList", "Auth/Authenticate", "Auth/AuthDisable",
    "Auth/UserAdd", "Auth/UserGet", "Auth/UserDelete", "Auth/UserChangePassword", "Auth/UserGrantRole",
    "Auth/UserRevokeRole", "Auth/RoleAdd", "Auth/RoleGet", "Auth/RoleDelete", "Auth/RoleGrantPermission",
    "Auth/RoleRevokePermission",
]


def test_unary_request_that_is_not_a_message(cairn):
    """Bytes that are not the method's message: etcd (grpc-go) answers
    INTERNAL "grpc: error unmarshalling request: <decoder's reason>"; the
    reason is Go's and is not compared."""
    ch = cairn.channel()
    for method in UNARY_METHODS:
        call = ch.unary_unary("/etcdserverpb." + method)
        for garbage in (b"\xff" * 8, b"\x0a\x64\x0a"):
            code, details = rpc_error(call, garbage, timeout=10)
            assert code == grpc.StatusCode.INTERNAL, (method, code, details)
            assert details.startswith("grpc: error unmarshalling request: "), (method, details)
    # A server stream's request: grpc-go's stream wording.
    with pytest.raises(grpc.RpcError) as e:
        for _ in ch.unary_stream("/etcdserverpb.Maintenance/Snapshot")(b"\xff" * 8, timeout=10):
            pass
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert e.value.details().startswith("grpc: failed to unmarshal the received message")
    assert cairn.revision() == 1
    cairn.kv.Put(pb.PutRequest(key=b"after", value=b"ok"), timeout=10)
    assert cairn.kv.Range(pb.RangeRequest(key=b"after"), timeout=10).kvs[0].value == b"ok"


def test_unknown_method_and_service(cairn):
    ch = cairn.channel()
    assert rpc_error(ch.unary_unary("/etcdserverpb.KV/Nope"), b"", timeout=10) == \
        (grpc.StatusCode.UNIMPLEMENTED, "unknown method Nope for service etcdserverpb.KV")
    assert rpc_error(ch.unary_unary("/foo.Bar/Baz"), b"", timeout=10) == \
        (grpc.StatusCode.UNIMPLEMENTED, "unknown service foo.Bar")
    stream = ch.stream_stream("/etcdserverpb.Watch/Nope")(iter([b""]), timeout=10)
    with pytest.raises(grpc.RpcError) as e:
        for _ in stream:
            pass
    assert (e.value.code(), e.value.details()) == \
        (grpc.StatusCode.UNIMPLEMENTED, "unknown method Nope for service etcdserverpb.Watch")


def _nested_txn(depth, key=b"deep"):
    t = pb.TxnRequest(success=[put_op(key, b"%d" % depth)])
    for _ in range(depth - 1):
        t = pb.TxnRequest(success=[pb.RequestOp(request_txn=t)])
    return t


def test_deeply_nested_txn(cairn):
    """etcd has no nesting limit of its own: a txn nested up to --max-txn-ops
    (128) levels applies; one level more is too many operations (each level
    uses one op of what the outer level left over), however deep."""
    # The response nests as deep as the request, beyond what python's
    # protobuf parses: read it raw.
    txn = cairn.channel().unary_unary(
        "/etcdserverpb.KV/Txn", request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=lambda b: b)
    for depth in (50, 51, 100, 128):
        assert txn(_nested_txn(depth), timeout=30)
        kv = cairn.kv.Range(pb.RangeRequest(key=b"deep"), timeout=10).kvs[0]
        assert kv.value == b"%d" % depth
    rev = cairn.revision()
    msg = (INVALID, "etcdserver: too many operations in txn request")
    for depth in (129, 200, 1000):
        assert rpc_error(txn, _nested_txn(depth)) == msg, depth
    assert cairn.revision() == rev


def test_lease_keepalive_request_that_is_not_a_message(cairn):
    """A keep-alive stream that receives bytes that are not a
    LeaseKeepAliveRequest ends with INTERNAL and grpc-go's stream message,
    after answering the requests before them."""
    lease_id = cairn.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=60), timeout=10).ID
    call = cairn.channel().stream_stream(
        "/etcdserverpb.Lease/LeaseKeepAlive",
        request_serializer=lambda b: b, response_deserializer=pb.LeaseKeepAliveResponse.FromString)
    good = pb.LeaseKeepAliveRequest(ID=lease_id).SerializeToString()
    stream = call(iter([good, b"\x0a\x64\x0a"]), timeout=10)
    answers = []
    with pytest.raises(grpc.RpcError) as e:
        for r in stream:
            answers.append(r)
    assert [(r.ID, r.TTL > 0) for r in answers] == [(lease_id, True)]
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert e.value.details().startswith("grpc: failed to unmarshal the received message"), \
        e.value.details()
    # the lease and the server are fine
    ttl = cairn.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lease_id), timeout=10)
    assert ttl.TTL > 0


def _rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def test_memory_returns_after_rejected_huge_requests(cairn):
    """Requests far beyond the receive limit are refused by the transport;
    the memory that held them must not stay with the server (etcd's RSS
    stays flat; gRPC C++ buffers each one, and glibc kept the freed pages)."""
    import time
    ch = grpc.insecure_channel(cairn.host_port, options=[("grpc.max_send_message_length", -1)])
    put = ch.unary_unary("/etcdserverpb.KV/Put")
    cairn.kv.Put(pb.PutRequest(key=b"warm", value=b"up"), timeout=10)
    before = _rss_bytes(cairn.pid)
    huge = pb.PutRequest(key=b"huge", value=b"x" * (64 << 20)).SerializeToString()
    for _ in range(5):
        code, details = rpc_error(put, huge, timeout=60)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    del huge
    # gRPC may keep a connection's last read buffers until it closes.
    ch.close()
    # Each was ~64 MiB of buffers; what is left after a few seconds must be
    # well below one of them (with glibc's malloc and no trimming 45..110 MiB
    # stayed; jemalloc with a 1 s decay gives freed pages back by itself).
    bound = 32 << 20
    deadline = time.monotonic() + 10
    while True:
        grown = _rss_bytes(cairn.pid) - before
        if grown < bound or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert grown < bound, "RSS grew by %d MiB after 5 rejected 64 MiB requests" % (grown >> 20)
    assert cairn.kv.Range(pb.RangeRequest(key=b"huge"), timeout=10).count == 0
