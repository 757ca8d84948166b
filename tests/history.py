"""Record a history against a running cluster: workload clients, watchers, final read.

Workload: CLIENTS threads, each with its own gRPC channel to every member,
pick a member per op at random (from the run's seed) and do puts of unique
values, linearizable and serializable gets, CAS txns, deletes and short
leases with keys (revoked, or left to expire).  Every op is appended to the
History when invoked and filled in when it completes; an op is in flight at
most once per client, so nothing is unbounded but the history itself.

Watchers: one thread per member, a watch from revision 1 on the workload's
prefix that resumes from the last seen revision + 1 after any error.

collect_final(): after the workload stops, waits (bounded) until the
leases are gone and every member and watcher has caught up, then reads the
whole revision history with a watch from revision 1, each member's state,
Range at sample revisions, and HashKV on every member.
"""

import itertools
import random
import re
import threading
import time
from collections import Counter

import grpc

import cluster
from etcd3.etcdrpc import kv_pb2, rpc_pb2, rpc_pb2_grpc

from history_model import (FAIL, OK, UNKNOWN, Event, Final, History, LeaseRecord, Op,
                           WatchLog, WatchResponse)

PREFIX = b"h/"
LEASE_PREFIX = b"h/l/"
KEYS = [b"h/k%d" % i for i in range(6)]
OP_TIMEOUT = 3.0          # every client call; a write that times out is UNKNOWN
LEASE_TTL = 2             # seconds; etcd's minimum with a 1 s election timeout
MAX_PENDING_LEASES = 2    # per client
CATCH_UP_TIMEOUT = 20.0   # end of run: members, watchers and leases each get this long

# A write that failed with one of these did not happen; any other error
# (UNAVAILABLE, DEADLINE_EXCEEDED, UNKNOWN...) leaves its outcome unknown.
DEFINITE_FAILURES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                     grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OUT_OF_RANGE,
                     grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.PERMISSION_DENIED,
                     grpc.StatusCode.UNAUTHENTICATED}

# gRPC's own message when no connection to the member exists: the call was
# failed by the client channel before anything was sent, so it did not happen.
NOT_CONNECTED = "failed to connect to all addresses"

# Reconnect fast after a member restarts (gRPC's default backoff grows to 120 s).
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 500)]


def channel(host_port):
    return cluster.make_channel(host_port, options=CHANNEL_OPTIONS)


def kv_tuple(kv):
    return (kv.value, kv.mod_revision, kv.create_revision, kv.version, kv.lease)


def event_from_pb(ev):
    prev = kv_tuple(ev.prev_kv) if ev.HasField("prev_kv") else None
    kv = ev.kv
    if ev.type == kv_pb2.Event.DELETE:
        return Event(kv.mod_revision, "DELETE", kv.key, prev=prev)
    return Event(kv.mod_revision, "PUT", kv.key, kv.value, kv.create_revision, kv.version,
                 kv.lease, prev)


def prefix_end(prefix):
    return prefix[:-1] + bytes([prefix[-1] + 1])


class Workload:
    """The client threads of one run, sharing one History."""

    def __init__(self, members, history, seed, clients=4, think_ms=(2, 8),
                 serializable_gets=False):
        """serializable_gets: the sabotage that sends every "get" serializable
        while recording it as linearizable, so the checker must see stale reads."""
        self.members = [(m.name, m.host_port) for m in members]
        self.serializable_gets = serializable_gets
        self.history = history
        self.stop_event = threading.Event()
        self.errors = Counter()           # (op kind, code, details) -> count
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.clients = [_Client(self, i, seed * 1000 + i, think_ms) for i in range(clients)]

    def start(self):
        for c in self.clients:
            c.start()

    def stop(self):
        self.stop_event.set()
        for c in self.clients:
            c.join(OP_TIMEOUT + 5)
        stuck = [c.name for c in self.clients if c.is_alive()]
        for c in self.clients:
            c.close()
        if stuck:
            raise RuntimeError("workload clients did not stop: %s" % stuck)

    def new_op(self, client, kind, **kw):
        with self._lock:
            op = Op(id=next(self._ids), client=client, kind=kind, **kw)
            self.history.ops.append(op)
        return op

    def count_error(self, kind, code, details):
        with self._lock:
            self.errors[(kind, code.name, details)] += 1


class _Client(threading.Thread):
    def __init__(self, workload, index, seed, think_ms):
        super().__init__(daemon=True, name="client-%d" % index)
        self.w = workload
        self.index = index
        self.rng = random.Random(seed)
        self.think_ms = think_ms
        self.channels = {name: channel(hp) for name, hp in workload.members}
        self.kv = {n: rpc_pb2_grpc.KVStub(ch) for n, ch in self.channels.items()}
        self.lease = {n: rpc_pb2_grpc.LeaseStub(ch) for n, ch in self.channels.items()}
        self.known = {}           # key -> last KV this client saw (CAS operands)
        self.revokes = []         # [(when, LeaseRecord)] still to revoke
        self.seq = 0

    def close(self):
        for ch in self.channels.values():
            ch.close()

    def run(self):
        ops = [(self.put, 25), (self.get, 20), (self.sget, 10), (self.cas, 20),
               (self.delete, 7), (self.lease_cycle, 4)]
        fns, weights = zip(*ops)
        while not self.w.stop_event.is_set():
            now = time.monotonic()
            due = [r for r in self.revokes if r[0] <= now]
            if due:
                self.revokes.remove(due[0])
                self.revoke(due[0][1])
            else:
                self.rng.choices(fns, weights)[0]()
            self.w.stop_event.wait(self.rng.uniform(*self.think_ms) / 1000.0)

    # ------------------------------------------------------------ helpers
    def unique_value(self):
        self.seq += 1
        return b"c%d-%d" % (self.index, self.seq)

    def pick(self):
        return self.rng.choice(self.w.members)[0]

    def call(self, op, fn):
        """Run one RPC for op, filling in times and outcome; the response or None."""
        op.invoke = time.monotonic()
        try:
            resp = fn()
        except grpc.RpcError as e:
            op.complete = time.monotonic()
            code, details = e.code(), e.details() or ""
            op.error = "%s: %s" % (code.name, details)
            never_sent = code == grpc.StatusCode.UNAVAILABLE and details.startswith(NOT_CONNECTED)
            op.status = FAIL if code in DEFINITE_FAILURES or never_sent else UNKNOWN
            self.w.count_error(op.kind, code, re.sub(r"127\.0\.0\.1:\d+", "<member>", details))
            if never_sent:
                self.w.stop_event.wait(0.05)   # the member is down: do not spin on it
            return None
        op.complete = time.monotonic()
        op.status = OK
        op.revision = resp.header.revision
        return resp

    # ---------------------------------------------------------------- ops
    def put(self):
        key, value, m = self.rng.choice(KEYS), self.unique_value(), self.pick()
        op = self.w.new_op(self.index, "put", key=key, value=value, member=m)
        if self.call(op, lambda: self.kv[m].Put(rpc_pb2.PutRequest(key=key, value=value),
                                                timeout=OP_TIMEOUT)):
            self.known[key] = (value, op.revision, 0, 0, 0)

    def _get(self, kind, serializable):
        key, m = self.rng.choice(KEYS), self.pick()
        op = self.w.new_op(self.index, kind, key=key, member=m)
        resp = self.call(op, lambda: self.kv[m].Range(
            rpc_pb2.RangeRequest(key=key, serializable=serializable), timeout=OP_TIMEOUT))
        if resp is not None:
            op.read = kv_tuple(resp.kvs[0]) if resp.kvs else None
            self.known[key] = op.read

    def get(self):
        self._get("get", self.w.serializable_gets)

    def sget(self):
        self._get("sget", True)

    def cas(self):
        """Txn: if mod_revision (or value) is what this client last saw, put a new value."""
        key, value, m = self.rng.choice(KEYS), self.unique_value(), self.pick()
        seen = self.known.get(key)
        if seen is not None and self.rng.random() < 0.5:
            compare = ("value", seen[0])
            cmp = rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.VALUE,
                                  key=key, value=seen[0])
        else:
            compare = ("mod", seen[1] if seen else 0)
            cmp = rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.MOD,
                                  key=key, mod_revision=compare[1])
        req = rpc_pb2.TxnRequest(
            compare=[cmp],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))])
        op = self.w.new_op(self.index, "cas", key=key, value=value, member=m, compare=compare)
        resp = self.call(op, lambda: self.kv[m].Txn(req, timeout=OP_TIMEOUT))
        if resp is None:
            return
        op.succeeded = resp.succeeded
        if resp.succeeded:
            self.known[key] = (value, op.revision, 0, 0, 0)
        else:
            kvs = resp.responses[0].response_range.kvs
            op.read = kv_tuple(kvs[0]) if kvs else None
            self.known[key] = op.read

    def delete(self):
        key, m = self.rng.choice(KEYS), self.pick()
        op = self.w.new_op(self.index, "delete", key=key, member=m)
        resp = self.call(op, lambda: self.kv[m].DeleteRange(
            rpc_pb2.DeleteRangeRequest(key=key), timeout=OP_TIMEOUT))
        if resp is not None:
            op.deleted = resp.deleted
            self.known[key] = None

    def lease_cycle(self):
        """Grant a lease (client-chosen ID, so even an unknown grant can be
        followed), attach one or two keys, then revoke it later or let it expire."""
        if len(self.revokes) >= MAX_PENDING_LEASES:
            return
        self.seq += 1
        lease_id = ((self.index + 1) << 32) | self.seq
        m = self.pick()
        op = self.w.new_op(self.index, "lease_grant", member=m, lease=lease_id)
        self.call(op, lambda: self.lease[m].LeaseGrant(
            rpc_pb2.LeaseGrantRequest(TTL=LEASE_TTL, ID=lease_id), timeout=OP_TIMEOUT))
        rec = LeaseRecord(id=lease_id, ttl=LEASE_TTL, grant=op.status)
        with self.w._lock:
            self.w.history.leases.append(rec)
        if op.status != OK:
            return
        for i in range(self.rng.randint(1, 2)):
            key = LEASE_PREFIX + b"%x/%d" % (lease_id, i)
            value, m = self.unique_value(), self.pick()
            rec.keys.append(key)
            put = self.w.new_op(self.index, "lease_put", key=key, value=value, member=m,
                                lease=lease_id)
            self.call(put, lambda: self.kv[m].Put(
                rpc_pb2.PutRequest(key=key, value=value, lease=lease_id), timeout=OP_TIMEOUT))
        if self.rng.random() < 0.5:
            self.revokes.append((time.monotonic() + self.rng.uniform(0.2, 1.5), rec))

    def revoke(self, rec):
        m = self.pick()
        op = self.w.new_op(self.index, "lease_revoke", member=m, lease=rec.id)
        self.call(op, lambda: self.lease[m].LeaseRevoke(
            rpc_pb2.LeaseRevokeRequest(ID=rec.id), timeout=OP_TIMEOUT))
        rec.revoke = op.status
        rec.revoke_revision = op.revision


class Watcher(threading.Thread):
    """One member's watch on PREFIX from revision 1, resumed after every error."""

    def __init__(self, name, host_port):
        super().__init__(daemon=True, name="watch-%s" % name)
        self.host_port = host_port
        self.log = WatchLog(member=name)
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._call = None

    def last_revision(self):
        return self.log.last_revision()

    def stop(self):
        self.stop_event.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self.join(10)

    def run(self):
        while not self.stop_event.is_set():
            before = self.log.last_revision()
            self.log.resumes.append((before + 1, before))
            self._stream(before + 1)
            self.stop_event.wait(0.2)

    def _stream(self, start):
        create = rpc_pb2.WatchCreateRequest(key=PREFIX, range_end=prefix_end(PREFIX),
                                            start_revision=start, prev_kv=True)
        ended = threading.Event()
        ch = channel(self.host_port)
        try:
            call = rpc_pb2_grpc.WatchStub(ch).Watch(_requests(create, ended))
            with self._lock:
                if self.stop_event.is_set():
                    call.cancel()
                self._call = call
            for resp in call:
                if resp.canceled or resp.compact_revision:
                    self.log.errors.append("canceled: compact_revision=%d reason=%r"
                                           % (resp.compact_revision, resp.cancel_reason))
                    return
                if resp.events:
                    self.log.responses.append(WatchResponse(
                        time.monotonic(), resp.header.revision,
                        [event_from_pb(e) for e in resp.events]))
        except grpc.RpcError as e:
            if not self.stop_event.is_set():
                self.log.errors.append("%s: %s" % (e.code().name, e.details()))
        finally:
            ended.set()
            with self._lock:
                self._call = None
            ch.close()


def _requests(create, ended):
    """A watch stream's requests: the create, then nothing until the stream
    ends (a half-closed stream is not how clients keep watching)."""
    yield rpc_pb2.WatchRequest(create_request=create)
    ended.wait(CATCH_UP_TIMEOUT * 10)


# ------------------------------------------------------------- final read
def _wait(pred, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def _lease_gone(members, lease_id):
    for m in members:
        try:
            with channel(m.host_port) as ch:
                r = rpc_pb2_grpc.LeaseStub(ch).LeaseTimeToLive(
                    rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id), timeout=2)
            return r.TTL == -1
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return True
    return False


def wait_leases_gone(members, leases):
    """Every lease that may exist must expire within its TTL plus the slack a
    leader change adds (a new leader extends leases by an election timeout)."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    for rec in leases:
        if rec.grant == FAIL:
            continue
        ok = _wait(lambda: _lease_gone(members, rec.id), max(0.0, deadline - time.monotonic()),
                   step=0.25)
        rec.alive_at_end = not ok


def _revision(member, serializable):
    with channel(member.host_port) as ch:
        return rpc_pb2_grpc.KVStub(ch).Range(
            rpc_pb2.RangeRequest(key=b"\0", serializable=serializable), timeout=2).header.revision


def _range_all(member, revision):
    with channel(member.host_port) as ch:
        r = rpc_pb2_grpc.KVStub(ch).Range(
            rpc_pb2.RangeRequest(key=PREFIX, range_end=prefix_end(PREFIX), revision=revision,
                                 serializable=True), timeout=5)
    return {kv.key: kv_tuple(kv) for kv in r.kvs}


def read_all_events(member, until_revision, timeout=CATCH_UP_TIMEOUT):
    """revision -> events of PREFIX from revision 1 to until_revision, by a fresh watch."""
    events = {}
    if until_revision < 2:
        return events
    create = rpc_pb2.WatchCreateRequest(key=PREFIX, range_end=prefix_end(PREFIX),
                                        start_revision=1, prev_kv=True)
    ended = threading.Event()
    with channel(member.host_port) as ch:
        call = rpc_pb2_grpc.WatchStub(ch).Watch(_requests(create, ended), timeout=timeout)
        try:
            for resp in call:
                for e in resp.events:
                    ev = event_from_pb(e)
                    events.setdefault(ev.revision, []).append(ev)
                if events and max(events) >= until_revision:
                    break
        finally:
            ended.set()
            call.cancel()
    return events


def _try(final, what, fn):
    try:
        return fn()
    except grpc.RpcError as e:
        final.problems.append("%s: %s: %s" % (what, e.code().name, e.details()))
    return None


def collect_final(cluster, history, watchers, rng):
    """Fill history.final (and the watchers' logs) once the cluster is healed."""
    final = Final()
    history.final = final
    members = [m for m in cluster.members if m.alive()]
    wait_leases_gone(members, history.leases)
    leader = cluster.wait_leader(CATCH_UP_TIMEOUT)
    rev = _try(final, "final revision on %s" % leader.name, lambda: _revision(leader, False))
    if rev is None:
        return final
    final.revision = rev
    for m in members:
        def caught_up(m=m):
            try:
                return _revision(m, True) >= rev
            except grpc.RpcError:
                return False
        if not _wait(caught_up, CATCH_UP_TIMEOUT):
            final.problems.append("%s did not reach revision %d" % (m.name, rev))
    for w in watchers:
        if not _wait(lambda: w.last_revision() >= rev, CATCH_UP_TIMEOUT):
            final.problems.append("watcher on %s stuck at revision %d (final %d); errors: %s"
                                  % (w.log.member, w.last_revision(), rev, w.log.errors[-3:]))
    events = _try(final, "final watch on %s" % leader.name,
                  lambda: read_all_events(leader, rev))
    final.events = events or {}
    for m in members:
        state = _try(final, "Range on %s" % m.name, lambda: _range_all(m, rev))
        if state is not None:
            final.states[m.name] = state
        h = _try(final, "HashKV on %s" % m.name, lambda: _hashkv(m, rev))
        if h is not None:
            final.hashes[m.name] = h
    for sample_rev in sorted(rng.sample(range(1, rev + 1), min(rev, 20))):
        m = rng.choice(members)
        state = _try(final, "Range@%d on %s" % (sample_rev, m.name),
                     lambda: _range_all(m, sample_rev))
        if state is not None:
            final.samples.append((m.name, sample_rev, state))
    return final


def _hashkv(member, revision):
    with channel(member.host_port) as ch:
        r = rpc_pb2_grpc.MaintenanceStub(ch).HashKV(rpc_pb2.HashKVRequest(revision=revision),
                                                    timeout=5)
    return (revision, r.hash, r.compact_revision)


def new_history():
    return History(lease_prefix=LEASE_PREFIX)


def summary(history, workload):
    """One paragraph for the run log: op counts by kind and outcome, top errors."""
    counts = Counter((op.kind, op.status) for op in history.ops)
    lines = ["ops: " + ", ".join("%s/%s=%d" % (k, s, n) for (k, s), n in sorted(counts.items()))]
    not_connected = sum(n for (_, _, d), n in workload.errors.items()
                        if d.startswith(NOT_CONNECTED))
    if not_connected:
        lines.append("  %5d x (any op) not sent: %s" % (not_connected, NOT_CONNECTED))
    answered = Counter({k: n for k, n in workload.errors.items()
                        if not k[2].startswith(NOT_CONNECTED)})
    for (kind, code, details), n in answered.most_common(10):
        lines.append("  %5d x %s %s: %s" % (n, kind, code, details))
    for w in history.watches:
        lines.append("  watcher on %s: %d streams, last errors %s"
                     % (w.member, len(w.resumes), w.errors[-2:]))
    return "\n".join(lines)
