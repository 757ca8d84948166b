"""python3-etcd3 (0.12, Debian) high-level client against the server under test.

The library's get/get_prefix ignore limit/revision/count_only (it accepts but
never sets them), so those range options are checked over the raw stubs at
the end of this file.
"""

import queue
import threading
import time

import etcd3
import etcd3.events
import etcd3.exceptions
import etcd3.transactions
import grpc
import pytest
from etcd3.etcdrpc import rpc_pb2 as pb

# python-etcd3's watch thread dies with "Channel closed" when the client is
# closed at teardown; that is library noise, not a server problem.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


class LeaseCompare(etcd3.transactions.BaseCompare):
    """python-etcd3 0.12 has no lease compare; this adds Compare.LEASE."""

    def build_compare(self, compare):
        compare.target = pb.Compare.LEASE
        compare.lease = int(self.value)


@pytest.fixture
def client(cairn):
    c = cairn.client()
    yield c
    c.close()


def test_put_get(client):
    r = client.put("foo", "bar")
    assert r.header.revision == 2
    value, meta = client.get("foo")
    assert value == b"bar"
    assert meta.key == b"foo"
    assert (meta.create_revision, meta.mod_revision, meta.version, meta.lease_id) == (2, 2, 1, 0)
    assert meta.response_header.revision == 2
    r = client.put("foo", b"\x00\xffbin", prev_kv=True)
    assert r.prev_kv.value == b"bar" and r.prev_kv.version == 1
    value, meta = client.get("foo")
    assert value == b"\x00\xffbin" and meta.version == 2 and meta.mod_revision == 3
    assert client.get("nope") == (None, None)
    value, _ = client.get("foo", serializable=True)
    assert value == b"\x00\xffbin"

    assert client.put_if_not_exists("foo", "x") is False
    assert client.put_if_not_exists("new", "x") is True
    assert client.replace("new", "x", "y") is True
    assert client.replace("new", "x", "z") is False
    assert client.get("new")[0] == b"y"


def test_get_prefix_and_sort(client):
    for k, v in [("/p/b", "2"), ("/p/a", "3"), ("/p/c", "1"), ("/q", "0"), ("/p/a", "4")]:
        client.put(k, v)
    got = [(m.key, v) for v, m in client.get_prefix("/p/")]
    assert got == [(b"/p/a", b"4"), (b"/p/b", b"2"), (b"/p/c", b"1")]
    got = [m.key for v, m in client.get_prefix("/p/", sort_order="descend")]
    assert got == [b"/p/c", b"/p/b", b"/p/a"]
    got = [m.key for v, m in client.get_prefix("/p/", sort_order="ascend", sort_target="value")]
    assert got == [b"/p/c", b"/p/b", b"/p/a"]
    got = [m.key for v, m in client.get_prefix("/p/", sort_order="descend", sort_target="mod")]
    assert got == [b"/p/a", b"/p/c", b"/p/b"]
    got = [m.key for v, m in client.get_prefix("/p/", sort_order="ascend", sort_target="create")]
    assert got == [b"/p/b", b"/p/a", b"/p/c"]
    got = [(m.key, v) for v, m in client.get_prefix("/p/", keys_only=True)]
    assert got == [(b"/p/a", b""), (b"/p/b", b""), (b"/p/c", b"")]
    got = [m.key for v, m in client.get_range("/p/b", "/q")]
    assert got == [b"/p/b", b"/p/c"]
    got = [m.key for v, m in client.get_all()]
    assert got == [b"/p/a", b"/p/b", b"/p/c", b"/q"]


def test_delete(client):
    for k in ("/d/1", "/d/2", "/d/3", "/e"):
        client.put(k, "v" + k)
    assert client.delete("/nope") is False
    assert client.delete("/e") is True
    r = client.delete("/d/1", prev_kv=True, return_response=True)
    assert r.deleted == 1 and r.prev_kvs[0].value == b"v/d/1"
    r = client.delete_prefix("/d/")
    assert r.deleted == 2
    assert r.header.revision == 8
    assert list(client.get_all()) == []


def test_transactions(client, cairn):
    client.put("k1", "v1")                      # rev 2
    client.put("k2", "v2")                      # rev 3
    lease = client.lease(600, lease_id=0x1234)
    client.put("k3", "v3", lease=lease.id)      # rev 4
    t = client.transactions

    ok, resps = client.transaction(
        compare=[t.value("k1") == "v1", t.version("k2") == 1,
                 t.create("k2") == 3, t.mod("k1") < 3],
        success=[t.put("k4", "a"), t.get("k1")],
        failure=[t.put("k4", "b")])
    assert ok is True
    # python-etcd3 returns ResponseOps for put/delete/txn, [(value, meta)] for get
    assert resps[0].response_put.header.revision == 5
    assert [(m.key, v, m.response_header.revision) for v, m in resps[1]] == [(b"k1", b"v1", 5)]
    assert client.get("k4")[0] == b"a"

    ok, resps = client.transaction(
        compare=[t.value("k1") != "v1"],
        success=[t.put("k5", "a")],
        failure=[t.delete("k4"), t.get("k5")])
    assert ok is False
    assert resps[0].response_delete_range.deleted == 1 and resps[1] == []

    # greater / less on every target, and lease compare
    ok, _ = client.transaction(
        compare=[t.version("k1") > 0, t.create("k3") > 3, t.mod("k3") < 5,
                 t.value("k2") > "v1", t.value("k2") < "v3",
                 LeaseCompare("k3") == 0x1234, LeaseCompare("k1") == 0],
        success=[], failure=[])
    assert ok is True
    ok, _ = client.transaction(compare=[LeaseCompare("k3") != 0x1234], success=[], failure=[])
    assert ok is False
    # a VALUE compare on a missing key is always false
    ok, _ = client.transaction(compare=[t.value("missing") != "x"], success=[], failure=[])
    assert ok is False
    # version == 0 matches a missing key
    ok, _ = client.transaction(compare=[t.version("missing") == 0], success=[], failure=[])
    assert ok is True
    # compare over a range: every key must satisfy it
    ok, _ = client.transaction(compare=[t.version("k", "l") == 1], success=[], failure=[])
    assert ok is True
    client.put("k2", "v2b")
    ok, _ = client.transaction(compare=[t.version("k", "l") == 1], success=[], failure=[])
    assert ok is False

    # nested txn
    ok, resps = client.transaction(
        compare=[],
        success=[t.txn(compare=[t.value("k1") == "v1"],
                       success=[t.put("n1", "in")], failure=[])],
        failure=[])
    assert ok is True
    assert resps[0].response_txn.succeeded is True
    assert client.get("n1")[0] == b"in"

    # duplicate key in one txn
    with pytest.raises(grpc.RpcError) as e:
        client.transaction(compare=[], success=[t.put("d", "1"), t.put("d", "2")], failure=[])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "etcdserver: duplicate key given in txn request"


class EventPump:
    """Drains a python-etcd3 watch iterator into a queue from a thread."""

    def __init__(self, iterator):
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._run, args=(iterator,), daemon=True)
        self.t.start()

    def _run(self, it):
        try:
            for ev in it:
                self.q.put(ev)
        except Exception as e:
            self.q.put(e)

    def take(self, n, timeout=20):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            try:
                ev = self.q.get(timeout=max(0.01, left))
            except queue.Empty:
                raise AssertionError("got %d of %d events: %r" % (len(out), n, out))
            if isinstance(ev, Exception):
                raise ev
            out.append(ev)
        return out


def test_watch_prefix_iterator(client):
    client.put("/w/zero", "0")                                   # rev 2
    events, cancel = client.watch_prefix("/w/", start_revision=3)
    try:
        pump = EventPump(events)
        client.put("/w/a", "1")                                  # 3
        client.put("/x", "not watched")                          # 4
        client.put("/w/b", "2")                                  # 5
        client.delete("/w/a")                                    # 6
        client.put("/w/b", "3")                                  # 7
        evs = pump.take(4)
        assert [type(e) for e in evs] == [etcd3.events.PutEvent, etcd3.events.PutEvent,
                                          etcd3.events.DeleteEvent, etcd3.events.PutEvent]
        assert [(e.key, e.value, e.mod_revision) for e in evs] == [
            (b"/w/a", b"1", 3), (b"/w/b", b"2", 5), (b"/w/a", b"", 6), (b"/w/b", b"3", 7)]
        assert evs[3].version == 2 and evs[3].create_revision == 5
    finally:
        cancel()

    # replay from the past, including the key written before the first watch
    events, cancel = client.watch_prefix("/w/", start_revision=1)
    try:
        evs = EventPump(events).take(5)
        assert [e.mod_revision for e in evs] == [2, 3, 5, 6, 7]
    finally:
        cancel()


def test_watch_sees_events_in_order(client, cairn):
    events, cancel = client.watch_prefix("/o/", start_revision=cairn.revision() + 1)
    try:
        pump = EventPump(events)
        n = 150
        writers = []

        def writer(w):
            c = cairn.client()
            try:
                for i in range(n // 3):
                    c.put("/o/%d/%03d" % (w, i), "%d" % i)
            finally:
                c.close()

        for w in range(3):
            th = threading.Thread(target=writer, args=(w,))
            th.start()
            writers.append(th)
        for th in writers:
            th.join(60)
        evs = pump.take(n, timeout=60)
        revs = [e.mod_revision for e in evs]
        assert revs == sorted(revs) and len(set(revs)) == n, "events out of order"
        for w in range(3):
            mine = [int(e.value) for e in evs if e.key.startswith(b"/o/%d/" % w)]
            assert mine == list(range(n // 3))
    finally:
        cancel()


def test_watch_compacted_revision(client):
    for i in range(4):
        client.put("/c", str(i))
    client.compact(4)
    # etcd 3.4 answers {created} and then {canceled, compact_revision=4}, so
    # python-etcd3 raises from the iterator; an older server would put
    # compact_revision in the created response and the library raises at
    # creation.  Both are accepted.
    try:
        events, cancel = client.watch_prefix("/c", start_revision=2)
    except etcd3.exceptions.RevisionCompactedError as e:
        err = e
    else:
        try:
            with pytest.raises(etcd3.exceptions.RevisionCompactedError) as ei:
                EventPump(events).take(1)
            err = ei.value
        finally:
            cancel()
    assert err.compacted_revision == 4


def test_leases(client):
    lease = client.lease(600)
    assert lease.id != 0 and lease.ttl == 600
    client.put("/l/a", "1", lease=lease)
    client.put("/l/b", "2", lease=lease.id)
    assert client.get("/l/a")[1].lease_id == lease.id
    assert lease.granted_ttl == 600
    assert 500 <= lease.remaining_ttl <= 600
    assert sorted(lease.keys) == [b"/l/a", b"/l/b"]
    r = lease.refresh()
    assert len(r) == 1 and r[0].ID == lease.id and r[0].TTL == 600

    fixed = client.lease(300, lease_id=0x7777)
    assert fixed.id == 0x7777 and fixed.ttl == 300
    # python-etcd3 maps FAILED_PRECONDITION to its own exception class
    with pytest.raises(etcd3.exceptions.PreconditionFailedError) as e:
        client.lease(300, lease_id=0x7777)
    assert e.value.__context__.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.__context__.details() == "etcdserver: lease already exists"

    lease.revoke()
    assert client.get("/l/a") == (None, None)
    assert list(client.get_prefix("/l/")) == []
    info = client.get_lease_info(lease.id)
    assert info.TTL == -1 and list(info.keys) == []
    with pytest.raises(grpc.RpcError) as e:
        client.revoke_lease(lease.id)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "etcdserver: requested lease not found"
    # keep-alive of an unknown lease: the stream answers TTL 0 (no error)
    r = list(client.refresh_lease(lease.id))
    assert len(r) == 1 and r[0].TTL == 0


def test_short_lease_expires(client, cairn):
    """A 1-second lease expires (etcd raises TTLs below its minimum, ~2 s for
    the default heartbeat/election, so only 'expires eventually' is checked)."""
    lease = client.lease(1)
    assert lease.ttl >= 1
    client.put("/exp", "x", lease=lease)
    deadline = time.monotonic() + 30
    while client.get("/exp")[0] is not None:
        assert time.monotonic() < deadline, "leased key not removed after 30s"
        time.sleep(0.2)
    assert client.get_lease_info(lease.id).TTL == -1


def test_compact_and_status_members(client, cairn):
    for i in range(5):
        client.put("/s", str(i))                 # revs 2..6
    client.compact(4, physical=True)
    kv = cairn.kv
    with pytest.raises(grpc.RpcError) as e:
        kv.Range(pb.RangeRequest(key=b"/s", revision=3), timeout=10)
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert e.value.details() == "etcdserver: mvcc: required revision has been compacted"
    assert kv.Range(pb.RangeRequest(key=b"/s", revision=4), timeout=10).kvs[0].value == b"2"

    members = list(client.members)
    assert len(members) == 1
    m = members[0]
    assert m.name == "n1"
    assert list(m.client_urls) == [cairn.endpoint]
    st = client.status()
    assert st.leader is not None and st.leader.id == m.id
    assert st.db_size > 0 and st.raft_term >= 1 and st.raft_index >= 1
    assert st.version.startswith("3.")


def test_raw_range_options(cairn):
    kv = cairn.kv
    for i in range(5):
        kv.Put(pb.PutRequest(key=b"r/%d" % i, value=b"v%d" % i), timeout=10)   # revs 2..6
    kv.Put(pb.PutRequest(key=b"r/1", value=b"v1b"), timeout=10)                # rev 7
    r = kv.Range(pb.RangeRequest(key=b"r/", range_end=b"r0", limit=2), timeout=10)
    assert [x.key for x in r.kvs] == [b"r/0", b"r/1"] and r.more and r.count == 5
    r = kv.Range(pb.RangeRequest(key=b"r/", range_end=b"r0", limit=5), timeout=10)
    assert len(r.kvs) == 5 and not r.more
    r = kv.Range(pb.RangeRequest(key=b"r/", range_end=b"r0", count_only=True), timeout=10)
    assert r.count == 5 and len(r.kvs) == 0
    r = kv.Range(pb.RangeRequest(key=b"r/1", revision=3), timeout=10)
    assert r.kvs[0].value == b"v1" and r.header.revision == 7
    r = kv.Range(pb.RangeRequest(key=b"r/", range_end=b"r0", revision=4), timeout=10)
    assert [x.key for x in r.kvs] == [b"r/0", b"r/1", b"r/2"]
    r = kv.Range(pb.RangeRequest(key=b"r/", range_end=b"r0", min_mod_revision=5), timeout=10)
    assert [x.key for x in r.kvs] == [b"r/1", b"r/3", b"r/4"]
    r = kv.Range(pb.RangeRequest(key=b"r/", range_end=b"r0", max_create_revision=3), timeout=10)
    assert [x.key for x in r.kvs] == [b"r/0", b"r/1"]
    r = kv.Range(pb.RangeRequest(key=b"\0", range_end=b"\0"), timeout=10)
    assert r.count == 5
    r = kv.Range(pb.RangeRequest(key=b"r/3", range_end=b"\0"), timeout=10)
    assert [x.key for x in r.kvs] == [b"r/3", b"r/4"]
    r = kv.Range(pb.RangeRequest(key=b"r/", range_end=b"r0", keys_only=True, limit=1,
                                 sort_order=pb.RangeRequest.DESCEND,
                                 sort_target=pb.RangeRequest.MOD), timeout=10)
    assert [(x.key, x.value) for x in r.kvs] == [(b"r/1", b"")] and r.more


def test_watch_backlog_delivers_every_revision_once(cairn):
    """A watch stream whose reader stalls while puts pour in: the server queues
    (and may merge several revisions into one response, or fall back to
    catching up from storage); once the reader drains, each watcher has every
    revision exactly once and in order, some responses carrying several."""
    import queue as q_mod
    requests = q_mod.Queue()

    def request_iter():
        while True:
            r = requests.get()
            if r is None:
                return
            yield r

    start = cairn.revision() + 1
    # (python3-etcd3's protos predate WatchCreateRequest.watch_id: ids are
    # the server's, in creation order; the second watcher asks for prev_kv.)
    for i in range(3):
        requests.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=b"/bk/", range_end=b"/bk0", start_revision=start, prev_kv=(i == 1))))
    stream = cairn.watch.Watch(request_iter(), timeout=60)
    try:
        created = [next(stream) for _ in range(3)]
        assert all(r.created and not r.canceled for r in created)
        ids = [r.watch_id for r in created]
        assert len(set(ids)) == 3
        with_prev = ids[1]
        # The reader now stalls: nothing is taken from `stream` while writing.
        n = 1500
        value = b"x" * 2048
        revs = [cairn.kv.Put(pb.PutRequest(key=b"/bk/%d" % (i % 50), value=value),
                             timeout=10).header.revision for i in range(n)]
        got = {wid: [] for wid in ids}
        multi = 0
        while min(len(v) for v in got.values()) < n:
            r = next(stream)
            assert not r.canceled, r
            if not r.events:
                continue
            got[r.watch_id].extend(e.kv.mod_revision for e in r.events)
            multi += len({e.kv.mod_revision for e in r.events}) > 1
            for e in r.events:
                assert e.kv.value == value
                assert e.HasField("prev_kv") == (r.watch_id == with_prev and e.kv.version > 1)
        for wid in ids:
            assert got[wid] == revs, "watcher %d: events missing, repeated or out of order" % wid
        assert multi > 0, "no response carried more than one revision"
    finally:
        requests.put(None)
        stream.cancel()
