"""Durability: every acknowledged write survives kill -9.

Several writer threads put unique keys (and bump a per-writer counter key);
each acknowledged put is recorded with its revision.  The server is killed
with SIGKILL in the middle of the load, restarted on the same data dir, and
every acknowledged write must be there.  Three rounds on the same data dir.
"""

import threading
import time

import grpc
from etcd3.etcdrpc import rpc_pb2 as pb, rpc_pb2_grpc

WRITERS = 4
ROUNDS = 3
MIN_ACKS_BEFORE_KILL = 150


class Writer(threading.Thread):
    def __init__(self, server, rnd, w, stop, counter_start):
        super().__init__(daemon=True)
        self.target = server.host_port
        self.rnd, self.w, self.stop = rnd, w, stop
        self.acked = []          # (key, value, revision)
        self.counter_acked = counter_start   # last acknowledged counter value
        self.error = None

    def run(self):
        ch = grpc.insecure_channel(self.target)
        kv = rpc_pb2_grpc.KVStub(ch)
        i = 0
        try:
            while not self.stop.is_set():
                i += 1
                key = b"crash/r%d/w%d/%06d" % (self.rnd, self.w, i)
                val = b"value-%d-%d-%d" % (self.rnd, self.w, i)
                try:
                    if i % 5 == 0:
                        # counter key, overwritten with increasing values
                        ckey = b"crash/counter/w%d" % self.w
                        cval = self.counter_acked + 1
                        r = kv.Put(pb.PutRequest(key=ckey, value=b"%d" % cval), timeout=10)
                        self.counter_acked = cval
                        self.acked.append((ckey, None, r.header.revision))
                    else:
                        r = kv.Put(pb.PutRequest(key=key, value=val), timeout=10)
                        self.acked.append((key, val, r.header.revision))
                except grpc.RpcError as e:
                    # The server went away: expected once it is killed.
                    self.error = e
                    return
        finally:
            ch.close()


def _all(server, prefix=b"crash/"):
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    r = server.kv.Range(pb.RangeRequest(key=prefix, range_end=end), timeout=30)
    return r, {kv.key: kv for kv in r.kvs}


def test_kill9_keeps_acknowledged_writes(cairn):
    srv = cairn
    counters = {w: 0 for w in range(WRITERS)}   # last acked counter per writer
    expected = {}                                # key -> (value, mod_revision)
    revs_after_restart = []
    max_acked_rev = 0
    for rnd in range(ROUNDS):
        stop = threading.Event()
        writers = [Writer(srv, rnd, w, stop, counters[w]) for w in range(WRITERS)]
        for t in writers:
            t.start()
        deadline = time.monotonic() + 120
        while sum(len(t.acked) for t in writers) < MIN_ACKS_BEFORE_KILL:
            assert time.monotonic() < deadline, "writers too slow / stuck"
            assert all(t.is_alive() for t in writers), [t.error for t in writers]
            time.sleep(0.02)
        # Kill while the writers are still going.
        srv.kill9()
        stop.set()
        for t in writers:
            t.join(60)
            assert not t.is_alive(), "writer hung after server kill"

        for t in writers:
            for key, val, rev in t.acked:
                max_acked_rev = max(max_acked_rev, rev)
                if val is not None:
                    expected[key] = (val, rev)
            counters[t.w] = max(counters[t.w], t.counter_acked)

        srv.start()
        cur = srv.revision()
        revs_after_restart.append(cur)
        assert cur >= max_acked_rev, \
            "round %d: revision went backwards: %d < acknowledged %d" % (rnd, cur, max_acked_rev)
        resp, got = _all(srv)
        missing = [k for k in expected if k not in got]
        assert not missing, "round %d: %d acknowledged keys lost after kill -9, e.g. %r" % (
            rnd, len(missing), missing[:5])
        for k, (val, rev) in expected.items():
            kv = got[k]
            assert kv.value == val, (k, kv.value, val)
            assert kv.mod_revision == rev and kv.create_revision == rev and kv.version == 1, \
                (k, kv, rev)
        for w, c in counters.items():
            if c == 0:
                continue
            kv = got.get(b"crash/counter/w%d" % w)
            assert kv is not None, "counter of writer %d lost" % w
            # The acked value, or the one that was in flight at the kill.
            assert int(kv.value) in (c, c + 1), (w, kv.value, c)
            counters[w] = int(kv.value)
        # The server keeps going: new writes get newer revisions.
        r = srv.kv.Put(pb.PutRequest(key=b"crash/after/%d" % rnd, value=b"x"), timeout=30)
        assert r.header.revision == cur + 1
        max_acked_rev = r.header.revision

    assert revs_after_restart == sorted(revs_after_restart)


def test_graceful_restart_keeps_everything(cairn):
    srv = cairn
    kv = srv.kv
    kv.Put(pb.PutRequest(key=b"g/a", value=b"1"), timeout=10)                  # 2
    kv.Put(pb.PutRequest(key=b"g/a", value=b"2"), timeout=10)                  # 3
    kv.Put(pb.PutRequest(key=b"g/b", value=b"x"), timeout=10)                  # 4
    kv.DeleteRange(pb.DeleteRangeRequest(key=b"g/b"), timeout=10)              # 5
    lease = srv.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=600, ID=0x4242), timeout=10)
    kv.Put(pb.PutRequest(key=b"g/l", value=b"leased", lease=lease.ID), timeout=10)  # 6
    kv.Compact(pb.CompactionRequest(revision=3, physical=True), timeout=10)
    before = kv.Range(pb.RangeRequest(key=b"\0", range_end=b"\0"), timeout=10)

    srv.restart()
    kv = srv.kv
    after = kv.Range(pb.RangeRequest(key=b"\0", range_end=b"\0"), timeout=10)
    assert after.header.revision == before.header.revision == 6
    assert list(after.kvs) == list(before.kvs)
    # history after the compaction point is still readable, before it is not
    r = kv.Range(pb.RangeRequest(key=b"g/b", revision=4), timeout=10)
    assert r.kvs[0].value == b"x"
    try:
        kv.Range(pb.RangeRequest(key=b"g/a", revision=2), timeout=10)
        raise AssertionError("compaction forgotten across restart")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.OUT_OF_RANGE
        assert e.details() == "etcdserver: mvcc: required revision has been compacted"
    # the lease survived, with its keys
    ttl = srv.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=0x4242, keys=True), timeout=10)
    assert ttl.grantedTTL == 600 and ttl.TTL > 0 and list(ttl.keys) == [b"g/l"]
    srv.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=0x4242), timeout=10)
    assert kv.Range(pb.RangeRequest(key=b"g/l"), timeout=10).count == 0
    assert kv.Put(pb.PutRequest(key=b"g/c", value=b"y"), timeout=10).header.revision == 8


def test_graceful_stop_under_put_load(cairn):
    """SIGTERM while 16 clients put as fast as they can: the member answers
    or refuses every put in flight and exits 0 (puts are served on gRPC's
    async API and answered by the apply thread: stopping must drain both),
    and every put it acknowledged is there after the restart."""
    import signal
    srv = cairn
    kv = srv.kv
    acked = [[] for _ in range(16)]
    stop = threading.Event()

    def writer(t):
        i = 0
        while not stop.is_set():
            key = b"load/%02d/%06d" % (t, i)
            try:
                kv.Put(pb.PutRequest(key=key, value=b"v"), timeout=10)
            except grpc.RpcError:
                return
            acked[t].append(key)
            i += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    try:
        deadline = time.monotonic() + 30
        while sum(len(a) for a in acked) < 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(len(a) for a in acked) >= 2000, "puts too slow to load the member"
        srv._signal(signal.SIGTERM)
        assert srv.proc.wait(30) == 0, srv.proc.returncode
    finally:
        stop.set()
        for th in threads:
            th.join(30)
    assert not any(th.is_alive() for th in threads)
    srv.restart()
    got = srv.kv.Range(pb.RangeRequest(key=b"load/", range_end=b"load0", keys_only=True), timeout=30)
    have = {k.key for k in got.kvs}
    missing = [k for a in acked for k in a if k not in have]
    assert not missing, (len(missing), missing[:5])
