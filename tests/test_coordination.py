"""etcd's lock and election services (v3lockpb.Lock, v3electionpb.Election)
and etcdctl's lock and elect commands, against cairn; the service calls
also against a real etcd, compared call by call.

The fencing test is the safe pattern of docs/coordination.md: a holder
whose lease expired must not be able to write, because its write compares
the lock key's create revision.
"""

import threading
import time

import grpc
import pytest
from etcd3.etcdrpc import rpc_pb2

import cluster
from coordination_client import Coordination

WAIT = 10  # s: the bound of every wait below


def outcome(fn):
    """The call's result, or its error as (code, details)."""
    try:
        return fn()
    except grpc.RpcError as e:
        return (e.code(), e.details())


def wait_for(cond, timeout=WAIT, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def count(server, prefix):
    r = server.kv.Range(rpc_pb2.RangeRequest(key=prefix, range_end=prefix[:-1] + bytes([prefix[-1] + 1]),
                                             count_only=True), timeout=10)
    return r.count


def scenario(server):
    """One run of every call and error; what it returns is compared between
    cairn and etcd (no ids or revisions, which differ)."""
    c = Coordination(server.channel())
    out = []
    first = c.lock(b"L1")
    out.append(("lock", first.key.startswith(b"L1/"), first.header.revision > 0))
    second = c.lock_future(b"L1")
    time.sleep(0.5)
    out.append(("second waits", not second.done()))
    c.unlock(first.key)
    got = second.result(timeout=WAIT)
    out.append(("second holds after unlock", got.key != first.key, got.header.revision > first.header.revision))
    c.unlock(got.key)
    out.append(("no lock keys left", count(server, b"L1/")))
    for call in (lambda: c.proclaim(None, b"x"), lambda: c.resign(None), lambda: c.leader(b"nobody"),
                 lambda: c.unlock(b""), lambda: c.lock(b"L2", lease=12345),
                 lambda: c.campaign(b"E2", b"v", lease=12345)):
        out.append(outcome(call))

    won = c.campaign(b"E1", b"v1")
    out.append(("campaign", won.leader.name, won.leader.key.startswith(b"E1/"), won.leader.rev > 0,
                won.leader.lease != 0))
    out.append(("leader", c.leader(b"E1").kv.value))
    stream = c.observe(b"E1")
    it = iter(stream)
    out.append(("observe: current", next(it).kv.value))
    c.proclaim(won.leader, b"v2")
    seen = next(it)
    out.append(("observe: proclaimed", seen.kv.value, seen.kv.create_revision == won.leader.rev))
    other = c.campaign_future(b"E1", b"w1")
    time.sleep(0.5)
    out.append(("second candidate waits", not other.done()))
    c.resign(won.leader)
    next_leader = other.result(timeout=WAIT)
    out.append(("second candidate leads", next_leader.leader.rev > won.leader.rev))
    out.append(("observe: next leader", next(it).kv.value))
    out.append(("stale proclaim", outcome(lambda: c.proclaim(won.leader, b"stale"))))
    out.append(("stale resign is a no-op", type(outcome(lambda: c.resign(won.leader))).__name__,
                c.leader(b"E1").kv.value))
    stream.cancel()

    # A waiting Lock whose client gives up takes its key away.
    held = c.lock(b"L3")
    waiting = c.lock_future(b"L3")
    time.sleep(0.3)
    out.append(("two keys while waiting", count(server, b"L3/")))
    waiting.cancel()
    wait_for(lambda: count(server, b"L3/") == 1, what="the cancelled waiter's key to go")
    out.append(("one key after cancel", count(server, b"L3/")))
    c.unlock(held.key)
    return out


def test_lock_and_election_as_etcd(cairn, etcd):
    got = scenario(cairn)
    want = scenario(etcd)
    assert got == want


def test_lease_expiry_releases_lock_and_leadership(cairn):
    c = Coordination(cairn.channel())
    lease = cairn.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=2), timeout=10).ID
    held = c.lock(b"job", lease=lease)
    assert held.key == b"job/%x" % lease
    waiter = c.lock_future(b"job")
    time.sleep(0.3)
    assert not waiter.done()
    # Nobody keeps the lease alive: it expires and the next in line holds.
    got = waiter.result(timeout=WAIT)
    assert got.key != held.key
    assert count(cairn, b"job/") == 1

    lease2 = cairn.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=2), timeout=10).ID
    leader = c.campaign(b"svc", b"first", lease=lease2).leader
    stream = c.observe(b"svc")
    it = iter(stream)
    assert next(it).kv.value == b"first"
    follower = c.campaign_future(b"svc", b"second")
    assert next(it).kv.value == b"second"  # after first's lease expired
    assert follower.result(timeout=WAIT).leader.rev > leader.rev
    stream.cancel()


def test_fencing_with_create_revision_rejects_stale_holder(cairn):
    """docs/coordination.md: write under a lock only with a Txn comparing
    the lock key's create revision; a holder whose lease is gone fails."""
    c = Coordination(cairn.channel())
    kv = cairn.kv

    def fenced_put(lock_key, token, value):
        txn = rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=lock_key, target=rpc_pb2.Compare.CREATE,
                                     result=rpc_pb2.Compare.EQUAL, create_revision=token)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"/echo/policy/acc1", value=value))])
        return kv.Txn(txn, timeout=10).succeeded

    lease_a = cairn.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60), timeout=10).ID
    a = c.lock(b"/locks/policy", lease=lease_a)
    token_a = kv.Range(rpc_pb2.RangeRequest(key=a.key), timeout=10).kvs[0].create_revision
    assert fenced_put(a.key, token_a, b"from A")
    b_waits = c.lock_future(b"/locks/policy")
    # A stalls (a GC pause, a partition) and its lease runs out; here the
    # lease is revoked, which is what its expiry does.
    cairn.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease_a), timeout=10)
    b = b_waits.result(timeout=WAIT)
    token_b = kv.Range(rpc_pb2.RangeRequest(key=b.key), timeout=10).kvs[0].create_revision
    # A wakes up and still believes it holds the lock: its write is refused.
    assert not fenced_put(a.key, token_a, b"stale write from A")
    assert fenced_put(b.key, token_b, b"from B")
    assert kv.Range(rpc_pb2.RangeRequest(key=b"/echo/policy/acc1"), timeout=10).kvs[0].value == b"from B"
    c.unlock(b.key)


def test_observe_stream_ends_when_client_cancels(cairn):
    c = Coordination(cairn.channel())
    for i in range(20):
        stream = c.observe(b"many")
        stream.cancel()
    won = c.campaign(b"many", b"x")
    stream = c.observe(b"many")
    assert next(iter(stream)).kv.value == b"x"
    stream.cancel()
    c.resign(won.leader)


def test_etcdctl_lock_exec_and_elect_listen(cairn):
    p = cairn.etcdctl("lock", "deploy", "--", "sh", "-c", "echo holding $ETCD_LOCK_KEY", check=True)
    assert p.stdout.startswith("holding deploy/"), p.stdout
    assert count(cairn, b"deploy/") == 0

    listener = cairn.etcdctl_popen("elect", "-l", "primary")
    candidate = cairn.etcdctl_popen("elect", "primary", "node-a")
    try:
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(listener.stdout.readline() for _ in range(2)),
                                  daemon=True)
        reader.start()
        reader.join(WAIT)
        assert len(lines) == 2, lines
        assert lines[0].decode().startswith("primary/")
        assert lines[1].decode().strip() == "node-a"
    finally:
        for p in (candidate, listener):
            p.kill()
            p.wait(timeout=WAIT)


def retry(fn, timeout=WAIT):
    """fn() until it stops failing (a new leader is being elected)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except grpc.RpcError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def test_lock_and_election_across_members_and_a_leader_change(tmp_path):
    c = cluster.ReplicatedCluster(cluster.TARGET, tmp_path, size=3).start()
    try:
        leader = c.leader()
        f1, f2 = [m for m in c.members if m is not leader]
        a, b, on_leader = Coordination(f1.channel()), Coordination(f2.channel()), Coordination(leader.channel())

        held = a.lock(b"x")
        waiting = b.lock_future(b"x")
        time.sleep(0.5)
        assert not waiting.done()
        on_leader.unlock(held.key)
        assert waiting.result(timeout=WAIT).key.startswith(b"x/")

        stream = b.observe(b"e")
        it = iter(stream)
        won = a.campaign(b"e", b"a1")
        assert next(it).kv.value == b"a1"

        # A lock waiting on one follower while the leader dies: the wait and
        # the observer go on under the next leader.
        held = a.lock(b"y")
        waiting = b.lock_future(b"y", timeout=60)
        wait_for(lambda: count(f2, b"y/") == 2, what="the waiter's key")
        leader.kill9()
        c.leader(exclude=leader)
        retry(lambda: a.unlock(held.key))
        assert waiting.result(timeout=WAIT).key.startswith(b"y/")
        retry(lambda: a.proclaim(won.leader, b"a2"))
        assert next(it).kv.value == b"a2"
        stream.cancel()
    finally:
        c.cleanup()
