"""The recorded history of one cluster run, as plain data.

Kept apart from the code that records it (history.py, which needs servers)
so the checker (history_check.py) and its unit tests can build histories by
hand.  Times are time.monotonic() seconds; revisions are etcd revisions.

KV is (value, mod_revision, create_revision, version, lease): what a Range
or a watch event says about one key.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

KV = Tuple[bytes, int, int, int, int]

# Op kinds: put get sget (serializable get) cas delete lease_grant lease_put
# lease_revoke.  The writes that carry a value of their own (unique per run):
VALUE_WRITES = ("put", "cas", "lease_put")

# Op outcomes.
OK = "ok"            # the server answered
FAIL = "fail"        # a definite error: the op did not happen
UNKNOWN = "unknown"  # timeout / unavailable: a write may or may not have happened


@dataclass
class Op:
    """One client operation.

    revision: the response header's revision (for a write that made a
    revision, that revision).  read: what a get (or a failed CAS's failure
    branch) returned for the key, None when absent.  compare: for CAS,
    ("mod", R) = mod_revision(key) == R, or ("value", V) = value(key) == V.
    """
    id: int
    client: int
    kind: str
    key: bytes = b""
    value: bytes = b""
    member: str = ""
    invoke: float = 0.0
    complete: Optional[float] = None
    status: str = "pending"
    revision: int = 0
    read: Optional[KV] = None
    compare: Optional[tuple] = None
    succeeded: Optional[bool] = None
    deleted: int = 0
    lease: int = 0
    error: str = ""

    def describe(self):
        what = "%s %s" % (self.kind, self.key.decode(errors="replace"))
        if self.kind in VALUE_WRITES:
            what += "=%s" % self.value.decode(errors="replace")
        if self.compare is not None:
            what += " if %s==%r" % self.compare
        if self.lease:
            what += " lease=%x" % self.lease
        done = "%.3f" % self.complete if self.complete is not None else "?"
        out = "op#%d(c%d %s on %s, [%.3f..%s] %s rev=%d" % (
            self.id, self.client, what, self.member or "?", self.invoke, done,
            self.status, self.revision)
        if self.error:
            out += " err=%s" % self.error
        return out + ")"

    def makes_revision(self):
        """An acknowledged op that created a revision of its own."""
        if self.status != OK:
            return False
        if self.kind in ("put", "lease_put"):
            return True
        if self.kind == "cas":
            return bool(self.succeeded)
        if self.kind == "delete":
            return self.deleted > 0
        return False


@dataclass
class Event:
    """A watch event.  prev: the prev_kv the server sent (None: none sent)."""
    revision: int
    kind: str            # "PUT" or "DELETE"
    key: bytes
    value: bytes = b""
    create_revision: int = 0
    version: int = 0
    lease: int = 0
    prev: Optional[KV] = None

    def body(self):
        return (self.kind, self.key, self.value, self.create_revision, self.version, self.lease)

    def describe(self):
        return "%s %s=%s@%d" % (self.kind, self.key.decode(errors="replace"),
                                self.value.decode(errors="replace"), self.revision)


@dataclass
class WatchResponse:
    received: float
    header_revision: int
    events: List[Event]


@dataclass
class WatchLog:
    """Everything one watcher saw, in arrival order.

    resumes: (start_revision, last revision seen before that stream) for every
    stream the watcher opened; the first is (1, 0).
    """
    member: str
    responses: List[WatchResponse] = field(default_factory=list)
    resumes: List[Tuple[int, int]] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)

    def last_revision(self):
        for r in reversed(self.responses):
            if r.events:
                return r.events[-1].revision
        return 0


@dataclass
class LeaseRecord:
    """A lease the workload granted (with a client-chosen ID), and its keys.

    grant / revoke: an outcome (OK, FAIL, UNKNOWN) or None (no revoke sent).
    alive_at_end: True if the lease still existed after the end-of-run wait.
    """
    id: int
    ttl: int
    grant: str
    keys: List[bytes] = field(default_factory=list)
    revoke: Optional[str] = None
    revoke_revision: int = 0
    alive_at_end: bool = False


@dataclass
class Final:
    """What was read from the cluster after the workload stopped.

    events: revision -> the events of that revision, from a watch from
    revision 1 at the end (every write of the run is under the watched prefix,
    so revisions 2..revision must all be there).  states: member -> key -> KV
    at `revision`.  samples: (member, revision, key -> KV) from Range at past
    revisions.  hashes: member -> (revision, hash, compact_revision).
    problems: what could not be collected (a member never caught up, ...).
    """
    revision: int = 1
    events: Dict[int, List[Event]] = field(default_factory=dict)
    states: Dict[str, Dict[bytes, KV]] = field(default_factory=dict)
    samples: List[Tuple[str, int, Dict[bytes, KV]]] = field(default_factory=list)
    hashes: Dict[str, Tuple[int, int, int]] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)


@dataclass
class History:
    ops: List[Op] = field(default_factory=list)
    leases: List[LeaseRecord] = field(default_factory=list)
    watches: List[WatchLog] = field(default_factory=list)
    final: Final = field(default_factory=Final)
    lease_prefix: bytes = b"h/l/"
