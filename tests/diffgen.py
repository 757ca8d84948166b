"""Random operation generator and response normalizer for differential tests.

One seeded generator produces a sequence of raw gRPC requests; each request
is sent to the server under test and to a real etcd, and the normalized
responses (or gRPC errors) must be identical.

The generator only looks at its own RNG and at the *reference* (etcd)
responses, and the run stops at the first mismatch, so a seed always
reproduces the same operation sequence.

etcd 3.4.23 behaviours this comparison enforces that are easy to get "wrong"
(they are etcd's behaviour, so cairn must match them):
  * Range.count ignores the min/max mod/create revision filters (it counts
    the whole range); `more` is computed after filtering and sorting.
  * sort_target != KEY with sort_order NONE sorts ASCEND; ties keep key
    order (see KEYS below).
  * A Range with a negative revision reads the current revision.
  * A VALUE compare on a missing key is always false; other targets compare
    against zero values.
  * In one txn, a from-key delete (range_end "\0") is NOT treated as
    overlapping a put (etcd's checkIntervals sees an empty interval), while
    an ordinary [key, range_end) delete is ("duplicate key given in txn
    request").
  * Nested txn responses carry a header with only `revision` set.
  * Compacting to the current compaction revision or below: "required
    revision has been compacted"; Compact(0) on a fresh server is accepted.
Known etcd 3.4 crash avoided on purpose: see Generator.safe_txn.
"""

import random

import grpc
from google.protobuf import text_format
from etcd3.etcdrpc import rpc_pb2 as pb

# At most 12 keys: etcd sorts ranges with Go's sort.Sort, which for n <= 12
# is an insertion sort, i.e. stable.  Ties (same version / create / mod /
# value) therefore come out in key order (ascending, also for DESCEND),
# which is the deterministic behaviour cairn is expected to reproduce.  With
# more keys etcd's tie order is an implementation accident.
KEYS = [b"a", b"a/1", b"a/2", b"a/2/x", b"a/3", b"ab", b"b", b"b/1", b"b/2",
        b"c", b"c/\x00", b"c/\xff"]
PREFIXES = [b"a", b"a/", b"a/2", b"b", b"b/", b"c", b"c/", b"a/2/x"]
LEASE_IDS = [0x11, 0x22, 0x33, 0x44, 0x55, 0x7fff0000aaaa]
VALUE_BYTES = bytes(range(256))

SORT_ORDERS = [pb.RangeRequest.NONE, pb.RangeRequest.ASCEND, pb.RangeRequest.DESCEND]
SORT_TARGETS = [pb.RangeRequest.KEY, pb.RangeRequest.VERSION, pb.RangeRequest.CREATE,
                pb.RangeRequest.MOD, pb.RangeRequest.VALUE]
CMP_RESULTS = [pb.Compare.EQUAL, pb.Compare.GREATER, pb.Compare.LESS, pb.Compare.NOT_EQUAL]
CMP_TARGETS = [pb.Compare.VERSION, pb.Compare.CREATE, pb.Compare.MOD, pb.Compare.VALUE,
               pb.Compare.LEASE]

KV_METHODS = {"Range", "Put", "DeleteRange", "Txn", "Compact"}
LEASE_METHODS = {"LeaseGrant", "LeaseRevoke", "LeaseTimeToLive", "LeaseLeases"}


def prefix_end(p):
    b = bytearray(p)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[:i + 1])
    return b"\0"


class State:
    """What the generator knows, learned from the reference responses."""

    def __init__(self):
        self.rev = 1
        self.compact_rev = 0
        self.leases = set()   # lease IDs believed alive


class Generator:
    def __init__(self, seed, allow_compact=True):
        self.rnd = random.Random(seed)
        self.st = State()
        self.allow_compact = allow_compact

    # ------------------------------------------------------------ pieces
    def key(self):
        r = self.rnd.random()
        if r < 0.005:
            return b""          # empty key -> "etcdserver: key is not provided"
        return self.rnd.choice(KEYS)

    def value(self):
        n = self.rnd.choice([0, 0, 1, 2, 3, 5, 8, 16])
        return bytes(self.rnd.choice(VALUE_BYTES) for _ in range(n))

    def lease_id(self, mostly_alive=True):
        alive = sorted(self.st.leases)
        if alive and mostly_alive and self.rnd.random() < 0.8:
            return self.rnd.choice(alive)
        return self.rnd.choice(LEASE_IDS)

    def revision(self):
        """A read revision: mostly current, sometimes historical/compacted/future."""
        r = self.rnd.random()
        rev = self.st.rev
        if r < 0.6:
            return 0
        if r < 0.9:
            return self.rnd.randint(max(1, self.st.compact_rev), rev)
        if r < 0.95:
            return self.rnd.randint(1, rev)     # may hit compacted revisions
        if r < 0.98:
            return rev + self.rnd.randint(1, 3)  # future
        return -self.rnd.randint(1, 3)          # negative: etcd treats as "current"

    def key_range(self):
        """(key, range_end) in one of the shapes clients use."""
        r = self.rnd.random()
        if r < 0.35:
            return self.key(), b""
        if r < 0.6:
            p = self.rnd.choice(PREFIXES)
            return p, prefix_end(p)
        if r < 0.75:
            a, b = self.rnd.choice(KEYS), self.rnd.choice(KEYS + PREFIXES)
            return a, b                            # may be inverted (empty range)
        if r < 0.88:
            return self.rnd.choice(KEYS + PREFIXES), b"\0"   # from-key
        if r < 0.99:
            return b"\0", b"\0"                    # everything
        return b"", b"\0"                          # empty key with range_end

    # ----------------------------------------------------------- requests
    def range_req(self, in_txn=False):
        k, e = self.key_range()
        req = pb.RangeRequest(key=k, range_end=e)
        rnd = self.rnd
        if rnd.random() < 0.3:
            req.limit = rnd.choice([1, 2, 3, 5, 20])
        if rnd.random() < (0.1 if in_txn else 0.3):
            req.revision = self.revision()
        if rnd.random() < 0.3:
            req.sort_order = rnd.choice(SORT_ORDERS)
            req.sort_target = rnd.choice(SORT_TARGETS)
        req.serializable = rnd.random() < 0.2
        req.keys_only = rnd.random() < 0.15
        req.count_only = rnd.random() < 0.1
        if rnd.random() < 0.15:
            which = rnd.choice(["min_mod_revision", "max_mod_revision",
                                "min_create_revision", "max_create_revision"])
            setattr(req, which, rnd.randint(1, self.st.rev + 1))
        return req

    def put_req(self):
        rnd = self.rnd
        req = pb.PutRequest(key=self.key(), value=self.value())
        req.prev_kv = rnd.random() < 0.4
        if rnd.random() < 0.2:
            req.lease = self.lease_id()
        if rnd.random() < 0.07:
            req.ignore_value = True
            if rnd.random() < 0.8:
                req.value = b""          # otherwise: "etcdserver: value is provided"
        if rnd.random() < 0.07:
            req.ignore_lease = True
            if rnd.random() < 0.8:
                req.lease = 0            # otherwise: "etcdserver: lease is provided"
        return req

    def delete_req(self):
        k, e = self.key_range()
        return pb.DeleteRangeRequest(key=k, range_end=e, prev_kv=self.rnd.random() < 0.5)

    def compare(self):
        rnd = self.rnd
        c = pb.Compare(key=self.key() or b"a")
        if rnd.random() < 0.01:
            c.key = b""
        c.result = rnd.choice(CMP_RESULTS)
        c.target = rnd.choice(CMP_TARGETS)
        if rnd.random() < 0.15:
            p = rnd.choice(PREFIXES)
            c.key, c.range_end = p, prefix_end(p)
        rev = self.st.rev
        if c.target == pb.Compare.VALUE:
            c.value = self.value()
        elif c.target == pb.Compare.VERSION:
            c.version = rnd.choice([0, 1, 2, 3, rnd.randint(0, 10)])
        elif c.target == pb.Compare.CREATE:
            c.create_revision = rnd.choice([0, rnd.randint(0, rev + 1)])
        elif c.target == pb.Compare.MOD:
            c.mod_revision = rnd.choice([0, rnd.randint(0, rev + 1)])
        else:
            c.lease = rnd.choice([0, self.lease_id()])
        return c

    def request_op(self, depth):
        r = self.rnd.random()
        if r < 0.005:
            return pb.RequestOp()        # empty op: etcd says "key not found"
        if r < 0.3:
            return pb.RequestOp(request_range=self.range_req(in_txn=True))
        if r < 0.7:
            return pb.RequestOp(request_put=self.put_req())
        if r < 0.9 or depth >= 2:
            return pb.RequestOp(request_delete_range=self.delete_req())
        return pb.RequestOp(request_txn=self.txn_req(depth + 1))

    def txn_req(self, depth=0):
        rnd = self.rnd
        req = pb.TxnRequest()
        for _ in range(rnd.choice([0, 1, 1, 2, 3])):
            req.compare.append(self.compare())
        for _ in range(rnd.choice([0, 1, 1, 2, 3, 4])):
            req.success.append(self.request_op(depth))
        for _ in range(rnd.choice([0, 1, 1, 2, 3])):
            req.failure.append(self.request_op(depth))
        return req

    def safe_txn(self):
        req = self.txn_req()
        if _has_delete(req):
            # etcd 3.4 bug: a put with ignore_value/ignore_lease whose key was
            # deleted earlier in the same txn passes the pre-check but then
            # fails inside applyTxn, and etcd PANICS ("unexpected error during
            # txn": etcdserver: key not found).  Never send that to the
            # reference: drop the ignore flags when the txn deletes anything.
            _clear_ignore_flags(req)
        return req

    def next_op(self):
        """Returns (method, request)."""
        rnd = self.rnd
        r = rnd.random()
        st = self.st
        if r < 0.27:
            return "Put", self.put_req()
        if r < 0.52:
            return "Range", self.range_req()
        if r < 0.60:
            return "DeleteRange", self.delete_req()
        if r < 0.78:
            return "Txn", self.safe_txn()
        if r < 0.83:
            # Long TTLs only: nothing may expire during a run, or the two
            # servers would diverge for timing reasons.
            ttl = rnd.choice([300, 600, 3600])
            return "LeaseGrant", pb.LeaseGrantRequest(TTL=ttl, ID=self.lease_id(False))
        if r < 0.86:
            return "LeaseRevoke", pb.LeaseRevokeRequest(ID=self.lease_id())
        if r < 0.90:
            return "LeaseTimeToLive", pb.LeaseTimeToLiveRequest(
                ID=self.lease_id(), keys=rnd.random() < 0.8)
        if r < 0.915:
            return "LeaseLeases", pb.LeaseLeasesRequest()
        if r < 0.945 and self.allow_compact:
            q = rnd.random()
            if q < 0.7:
                rev = rnd.randint(max(1, st.compact_rev), st.rev)   # maybe == compact_rev: error
            elif q < 0.85:
                rev = st.rev + rnd.randint(1, 3)                     # future
            else:
                rev = rnd.randint(0, max(0, st.compact_rev))         # already compacted
            return "Compact", pb.CompactionRequest(revision=rev, physical=rnd.random() < 0.5)
        return "Put", self.put_req()

    def observe(self, method, req, resp):
        """Update the state from the reference response (None on error)."""
        if resp is None:
            return
        if resp.HasField("header") and resp.header.revision:
            self.st.rev = max(self.st.rev, resp.header.revision)
        if method == "LeaseGrant":
            self.st.leases.add(resp.ID)
        elif method == "LeaseRevoke":
            self.st.leases.discard(req.ID)
        elif method == "Compact":
            self.st.compact_rev = req.revision


def _ops(txn):
    for op in list(txn.success) + list(txn.failure):
        yield op
        if op.WhichOneof("request") == "request_txn":
            for sub in _ops(op.request_txn):
                yield sub


def _has_delete(txn):
    return any(op.WhichOneof("request") == "request_delete_range" for op in _ops(txn))


def _clear_ignore_flags(txn):
    for op in _ops(txn):
        if op.WhichOneof("request") == "request_put":
            p = op.request_put
            if p.ignore_value or p.ignore_lease:
                p.ignore_value = p.ignore_lease = False


# ------------------------------------------------------------------ calls
def call(server, method, req, timeout=30):
    """Returns ("ok", response) or ("err", (code name, details))."""
    stub = server.kv if method in KV_METHODS else server.lease
    try:
        return "ok", getattr(stub, method)(req, timeout=timeout)
    except grpc.RpcError as e:
        if e.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
            raise AssertionError("%s on %r: transport error %s %s"
                                 % (method, server, e.code(), e.details()))
        return "err", (e.code().name, e.details())


def _strip_headers(msg):
    """Drop cluster_id, member_id, raft_term everywhere (also nested txn headers)."""
    for fd, val in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.message_type.name == "ResponseHeader":
            val.cluster_id = 0
            val.member_id = 0
            val.raft_term = 0
            continue
        if fd.label == fd.LABEL_REPEATED:
            for v in val:
                _strip_headers(v)
        else:
            _strip_headers(val)


def normalize(method, result):
    """Turn ("ok", resp) / ("err", ...) into a comparable value.

    Returns (comparable, loose) where loose holds values compared with a
    tolerance (remaining lease TTL).
    """
    kind, payload = result
    if kind == "err":
        return ("err",) + tuple(payload), None
    resp = type(payload)()
    resp.CopyFrom(payload)
    _strip_headers(resp)
    loose = None
    if method == "LeaseTimeToLive":
        keys = sorted(resp.keys)
        del resp.keys[:]
        resp.keys.extend(keys)
        loose = resp.TTL
        resp.TTL = 0 if resp.TTL >= 0 else -1
    elif method == "LeaseLeases":
        ids = sorted(l.ID for l in resp.leases)
        del resp.leases[:]
        for i in ids:
            resp.leases.add(ID=i)
    return ("ok", text_format.MessageToString(resp, as_utf8=False)), loose


def fmt(method, req):
    return "%s(%s)" % (method, text_format.MessageToString(req, as_one_line=True))


def fmt_result(result):
    kind, payload = result
    if kind == "err":
        return "gRPC error %s: %r" % payload
    return text_format.MessageToString(payload)


# Remaining TTL is reported in whole seconds and measured at slightly
# different moments on the two servers; allow a little slack so a slow,
# shared machine cannot make the test flaky.
TTL_SLACK = 2


def results_equal(method, a, b):
    na, la = normalize(method, a)
    nb, lb = normalize(method, b)
    if na != nb:
        return False
    if la is not None and lb is not None and abs(la - lb) > TTL_SLACK:
        return False
    return True
