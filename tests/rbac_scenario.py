"""Seeded RBAC scenario: generator, permission model, runner, normalizer.

One seed (random.Random(seed)) produces a fixed list of Steps: the setup of
users, roles and permissions while auth is off (with the error cases of the
auth API), AuthEnable, then a mix of KV / Txn / Watch / Lease / Maintenance /
Cluster / Auth calls made by every user with its own token (and by root, by
a client without a token and by one with a bogus token), root changing roles,
permissions and passwords in the middle of it, and finally AuthDisable.
Runner.run() sends the steps to one server over etcd's gRPC API and returns
one normalized outcome per step:

    ("ok", <normalized response>)   or   ("err", <status code name>, <details>)

Two servers given the same seed must produce equal outcome lists
(test_auth_rbac.py).  The generator never looks at a server's answers, so a
seed is always the same scenario; the only run-time inputs are lease IDs (a
symbol L1, L2... stands for the ID the server chose) and the compaction
revision (the highest header revision seen so far, minus one).

Normalization: cluster_id, member_id and raft_term are dropped, header
revisions are kept (both servers start empty, so they must be equal), lease
IDs become their symbols, tokens are never compared, lease TTLs become
"positive"/-1, Status/Hash/Snapshot answers become "ok" (sizes, hashes and
versions differ between implementations; HashKV keeps compact_revision).

The permission model (Model) predicts, for most steps, whether etcd allows
the call ('allow'), refuses it for lack of permission ('deny'), refuses a
client without a token ('no-user') or with a bad one ('bad-token').  It is
checked against the reference etcd (check_expectations) so the generator's
idea of the rules is validated too, and it lets the generator stay away from
the places where etcd 3.4.23 (the reference binary) is known to differ from
later etcd releases (the second list below): the scenario tests etcd 3.5
semantics, which 3.4.23 shares everywhere the scenario goes.

etcd rules this scenario exercises (etcd 3.4.23's auth/store.go,
etcdserver/apply_auth.go, v3rpc/maintenance.go, v3rpc/watch.go; the same in
etcd 3.5.33 unless said otherwise below):
  * A permission [key, range_end) is an interval; range_end "" is the single
    key, "\\0" means "to the end of the key space".  READWRITE counts for
    both READ and WRITE.  A user's permissions are the union over its roles.
    A single-key request (range_end "") is allowed if any permission interval
    contains the key; a range request only if the union of the user's
    intervals covers the whole range (a gap refuses it).
  * Range/Watch/Txn compares need READ on their range; Put needs WRITE on the
    key (+READ with prev_kv); DeleteRange WRITE on the range (+READ with
    prev_kv); Txn needs all of that for every compare and op of both
    branches (nested txns included, see below); Put with a lease and
    LeaseRevoke need WRITE on every key already attached to the lease.
  * Users with the root role may do everything.  Admin-only: every auth
    mutation, UserList, RoleList, AuthDisable, UserGet except of oneself,
    RoleGet except of one's own roles, Maintenance Defragment / Hash /
    HashKV / Snapshot.  Those four answer a refusal with codes.Unknown and the
    auth package's own text ("auth: permission denied", "auth: user name is
    empty", "auth: invalid auth token"): etcd does not translate it.
  * No token: "etcdserver: user name is empty" (InvalidArgument); a token
    that is not one: "etcdserver: invalid auth token" (Unauthenticated).
  * Tokens (etcd's default "simple" tokens) stay valid when roles or
    permissions change: the next request is judged by the new permissions
    ("etcdserver: permission denied").  UserDelete and UserChangePassword
    invalidate the user's tokens.  (With --auth-token jwt etcd instead
    answers "etcdserver: revision of auth store is old" to any token issued
    before an auth change.)
  * A refused watch is answered created=True, canceled=True, watch_id=-1 and
    cancel_reason = the gRPC error's text ("rpc error: code = ... desc = ...").

Where etcd 3.4.23 (the reference binary) and the current etcd 3.5 (3.5.33)
differ, the generator stays away, so the scenario holds for both:
  * 3.4.23 does not check the ops inside a nested txn (fixed in 3.4.42 /
    3.5.28), nor READ for a txn put's prev_kv, nor a txn put's lease (3.4.44
    / 3.5.30): nested txns are only generated where the nested part is
    allowed or the outer part is refused anyway; txn puts get prev_kv only
    where the user can read, and never a lease.
  * Before 3.5.33 a [key, +inf) watch is checked as if it were on key alone:
    from-key watches only where both checks agree.
  * 3.5.28+ (f936af2c0, cdbfd651c, c2f6dac8d) closed the calls 3.4 leaves
    open: Compact and MoveLeader need the root role; Status, MemberList,
    Alarm GET, LeaseGrant, LeaseRevoke, LeaseTimeToLive need a valid token;
    LeaseLeases READ on every lease's keys, LeaseTimeToLive(keys) READ on the
    lease's keys.  3.4.23 answers all of them without a token.  So: Compact,
    MoveLeader, LeaseLeases and TimeToLive(keys) only by users with the root
    role; the others only with a valid token (LeaseGrant/LeaseRevoke also
    with a bad one: "invalid auth token" from both; Alarm not: 3.4.23 says
    Unknown "auth: invalid auth token" there).
  * 3.4.23 answers "invalid auth token" to a request carrying a token while
    auth is off, and checks a token sent with Authenticate; 3.5 ignores
    both: no token is sent while auth is off, nor with Authenticate.
  * 3.4.28+/3.5 refuse permissions with an empty or inverted range, 3.5
    stores an empty password as no usable password: only valid ranges and
    non-empty passwords.
  * A role with two permissions on the same key (different range_end) keeps
    them in an order that depends on Go's sort: the generator never creates
    two permissions with the same key in one role.
  * A token "x.N" (simple-token syntax) makes etcd wait until raft index N
    is applied: the bogus token is "bogus", with no dot.
"""

import pprint
import queue
import random
import threading
import time

import grpc
from etcd3.etcdrpc import auth_pb2, kv_pb2
from etcd3.etcdrpc import rpc_pb2 as pb
from etcd3.etcdrpc import rpc_pb2_grpc as rpcs

TIMEOUT = 10          # seconds, every unary call
DEFAULT_OPS = 220     # calls in the main mix (the whole scenario is ~1.6x that)
WATCH_WAIT = 5        # seconds, longest wait for one watch response
REFUSED_WATCH_WAIT = 0.3  # seconds a refused watch is watched for stray events
ANON = "<none>"       # actor without a token
BOGUS = "<bogus>"     # actor with the token "bogus"
BOGUS_TOKEN = "bogus"
ROOT = "root"
ROOT_PW = "rootpw"

READ, WRITE, READWRITE = auth_pb2.Permission.READ, auth_pb2.Permission.WRITE, \
    auth_pb2.Permission.READWRITE
PERM_NAMES = {READ: "READ", WRITE: "WRITE", READWRITE: "READWRITE"}

# The key space.  Permission and request ranges are built from these.
KEYS = [b"/a/x", b"/a/y", b"/a/z", b"/b/x", b"/b/y", b"/c", b"/d/x", b"/e"]
PREFIXES = [b"/a/", b"/b/", b"/d/", b"/"]
BOUNDS = sorted([b"/a/", b"/a/x", b"/a/y", b"/a/y\x00", b"/a/z", b"/b/", b"/b/x",
                 b"/b/y", b"/c", b"/c\x00", b"/d/", b"/e"])
FROM_KEYS = [b"/a/y", b"/b/", b"/c", b"/d/"]

INF = None  # the end of an interval open to the end of the key space


def prefix_end(p):
    """etcd's GetPrefixRangeEnd (only for the printable prefixes used here)."""
    return p[:-1] + bytes([p[-1] + 1])


def show(b):
    return b.decode("latin-1").replace("\x00", "\\0")


def show_range(key, end):
    if end == b"":
        return show(key)
    if end == b"\0":
        return "[%s, +inf)" % show(key)
    if len(key) and end == prefix_end(key):
        return "prefix %s" % show(key)
    return "[%s, %s)" % (show(key), show(end))


# --------------------------------------------------------------- intervals
def perm_interval(key, end):
    """The interval etcd's getMergedPerms builds for a permission."""
    if end == b"":
        return (key, key + b"\0")
    if end == b"\0":
        return (key, INF)
    return (key, end)


def end_lt(a, b):
    """a < b for interval ends, INF being the largest."""
    if a is INF:
        return False
    if b is INF:
        return True
    return a < b


def overlaps(x, y):
    (b1, e1), (b2, e2) = x, y
    return end_lt(b1, e2) and end_lt(b2, e1)


def covers(ivls, q):
    """etcd's adt.IntervalTree.Contains: the intervals overlapping q, visited
    in begin order, are contiguous and reach from q's begin to q's end."""
    hits = sorted((i for i in ivls if overlaps(i, q)),
                  key=lambda i: (i[0], i[1] is INF, i[1] or b""))
    if not hits:
        return False
    min_begin, max_end = hits[0]
    for b, e in hits[1:]:
        if end_lt(max_end, b):
            return False
        if end_lt(max_end, e):
            max_end = e
    return min_begin <= q[0] and not end_lt(max_end, q[1])


def query_allowed(ivls, key, end):
    """isRangeOpPermitted: a point check for range_end "", else coverage."""
    if end == b"":
        return any(overlaps(i, (key, key + b"\0")) for i in ivls)
    return covers(ivls, (key, INF if end == b"\0" else end))


# ------------------------------------------------------------------ model
class Model:
    """The auth state as the generator believes etcd has it."""

    def __init__(self):
        self.enabled = False
        self.users = {}     # name -> {"pw": str or None, "roles": set()}
        self.roles = {}     # name -> {key: (range_end, perm_type)}
        self.token_ok = {}  # user -> its last token is still valid

    def is_admin(self, user):
        return user in self.users and "root" in self.users[user]["roles"]

    def intervals(self, user, want):
        out = []
        for r in sorted(self.users[user]["roles"]):
            for key, (end, ptype) in self.roles.get(r, {}).items():
                if ptype == READWRITE or (ptype == READ) == (want == "read"):
                    out.append(perm_interval(key, end))
        return out

    def can(self, user, want, key, end=b""):
        if user not in self.users:
            return False
        if self.is_admin(user):
            return True
        return query_allowed(self.intervals(user, want), key, end)

    def token_state(self, actor):
        """None if the actor's identity is fine, else the verdict it gets."""
        if not self.enabled:
            return "allow"
        if actor == ANON:
            return "no-user"
        if actor == BOGUS or not self.token_ok.get(actor, False):
            return "bad-token"
        return None

    def verdict(self, actor, checks):
        """checks: [(want, key, range_end)] all needed for one request."""
        st = self.token_state(actor)
        if st:
            return st
        return "allow" if all(self.can(actor, w, k, e) for w, k, e in checks) else "deny"

    def admin_verdict(self, actor):
        st = self.token_state(actor)
        if st:
            return st
        return "allow" if self.is_admin(actor) else "deny"

    def user_roles(self, user):
        return sorted(self.users[user]["roles"])


# ------------------------------------------------------------------- steps
class Step:
    """One call.  expect: None (not predicted), 'allow' / 'deny' / 'no-user'
    / 'bad-token' (see check_expectations), or an exact outcome tuple."""

    __slots__ = ("idx", "actor", "op", "args", "desc", "expect")

    def __init__(self, idx, actor, op, args, desc, expect):
        self.idx, self.actor, self.op, self.args = idx, actor, op, args
        self.desc, self.expect = desc, expect

    def __repr__(self):
        return "#%d %s: %s" % (self.idx, self.actor, self.desc)


def E(code, details):
    """An exact expected error outcome."""
    return ("err", code, details)


OK = ("ok",)  # expect: any success

ERR_ROOT_USER = E("FAILED_PRECONDITION", "etcdserver: root user does not exist")
ERR_ROOT_ROLE = E("FAILED_PRECONDITION", "etcdserver: root user does not have root role")
ERR_USER_EXISTS = E("FAILED_PRECONDITION", "etcdserver: user name already exists")
ERR_USER_EMPTY = E("INVALID_ARGUMENT", "etcdserver: user name is empty")
ERR_USER_NOT_FOUND = E("FAILED_PRECONDITION", "etcdserver: user name not found")
ERR_ROLE_EXISTS = E("FAILED_PRECONDITION", "etcdserver: role name already exists")
ERR_ROLE_NOT_FOUND = E("FAILED_PRECONDITION", "etcdserver: role name not found")
ERR_ROLE_EMPTY = E("INVALID_ARGUMENT", "etcdserver: role name is empty")
ERR_AUTH_FAILED = E("INVALID_ARGUMENT",
                    "etcdserver: authentication failed, invalid user ID or password")
ERR_DENIED = E("PERMISSION_DENIED", "etcdserver: permission denied")
ERR_ROLE_NOT_GRANTED = E("FAILED_PRECONDITION", "etcdserver: role is not granted to the user")
ERR_PERM_NOT_GRANTED = E("FAILED_PRECONDITION",
                         "etcdserver: permission is not granted to the role")
ERR_NOT_ENABLED = E("FAILED_PRECONDITION", "etcdserver: authentication is not enabled")
ERR_BAD_TOKEN = E("UNAUTHENTICATED", "etcdserver: invalid auth token")
ERR_AUTH_MGMT = E("INVALID_ARGUMENT", "etcdserver: invalid auth management")
ERR_OLD_REV = E("INVALID_ARGUMENT", "etcdserver: revision of auth store is old")
# etcd has no gRPC mapping for this one: codes.Unknown with auth's own text.
ERR_NO_PASSWORD_USER = E("UNKNOWN",
                         "auth: authentication failed, password was given for no password user")

VERDICT_ERRORS = {"deny": ERR_DENIED, "no-user": ERR_USER_EMPTY, "bad-token": ERR_BAD_TOKEN}
# The Maintenance calls that need the root role (Defragment, Hash, HashKV,
# Snapshot) return the auth package's error as it is: gRPC turns it into
# codes.Unknown with the text "auth: ..." (etcd's authMaintenanceServer does
# not call togRPCError).
MAINT_ADMIN_OPS = {"defrag", "hash", "hashkv", "snapshot"}
MAINT_VERDICT_ERRORS = {"deny": E("UNKNOWN", "auth: permission denied"),
                        "no-user": E("UNKNOWN", "auth: user name is empty"),
                        "bad-token": E("UNKNOWN", "auth: invalid auth token")}
AUTH_ERRORS = {ERR_DENIED, ERR_USER_EMPTY, ERR_BAD_TOKEN, ERR_OLD_REV} | \
    set(MAINT_VERDICT_ERRORS.values())


# --------------------------------------------------------------- generator
class Generator:
    """Builds the step list of one seed.  Only the RNG and the model decide."""

    def __init__(self, seed, ops=None):
        self.seed = seed
        self.rng = random.Random(seed)
        self.m = Model()
        self.steps = []
        self.n_leases = 0
        self.n_ops = ops if ops is not None else DEFAULT_OPS
        self.deleted_user = False
        self.deleted_role = False
        self.pw_changes = 0

    # -- helpers ---------------------------------------------------------
    def add(self, actor, op, desc, expect=None, **args):
        self.steps.append(Step(len(self.steps), actor, op, args, desc, expect))

    def value(self):
        return b"v%d" % len(self.steps)

    def random_target(self):
        """A (key, range_end) of any of the four shapes."""
        r = self.rng.random()
        if r < 0.45:
            return self.rng.choice(KEYS), b""
        if r < 0.65:
            p = self.rng.choice(PREFIXES)
            return p, prefix_end(p)
        if r < 0.88:
            lo, hi = sorted(self.rng.sample(BOUNDS, 2))
            return lo, hi
        if self.rng.random() < 0.25:
            return b"\0", b"\0"  # the whole key space
        return self.rng.choice(FROM_KEYS), b"\0"

    def target_for(self, actor, want=None):
        """Half the time a target derived from the actor's own permissions
        (so that allowed calls are common), else a random one."""
        perms = []
        if actor in self.m.users:
            for r in self.m.user_roles(actor):
                for key, (end, ptype) in self.m.roles.get(r, {}).items():
                    if want is None or ptype == READWRITE or (ptype == READ) == (want == "read"):
                        perms.append((key, end))
        if perms and self.rng.random() < 0.55:
            key, end = self.rng.choice(sorted(perms))
            if end == b"" or self.rng.random() < 0.5:
                return key, end
            ivl = perm_interval(key, end)
            inside = [k for k in KEYS if overlaps(ivl, (k, k + b"\0"))]
            if inside:
                return self.rng.choice(inside), b""
            return key, end
        return self.random_target()

    def key_for(self, actor, want):
        key, end = self.target_for(actor, want)
        if end != b"":
            ivl = perm_interval(key, end)
            inside = [k for k in KEYS if overlaps(ivl, (k, k + b"\0"))]
            key = self.rng.choice(inside) if inside else self.rng.choice(KEYS)
        return key

    def gen_perm(self, role):
        """A new permission (key, range_end, type) on a key the role has no
        permission on yet."""
        taken = set(self.m.roles[role])
        for _ in range(50):
            shape = self.rng.choice(["key", "key", "range", "prefix", "from"])
            if shape == "key":
                key, end = self.rng.choice(KEYS), b""
            elif shape == "prefix":
                # "/" (everything) only now and then, or most calls pass.
                key = self.rng.choice(PREFIXES if self.rng.random() < 0.15 else PREFIXES[:-1])
                end = prefix_end(key)
            elif shape == "range":
                key, end = sorted(self.rng.sample(BOUNDS, 2))
            else:
                key, end = self.rng.choice(FROM_KEYS), b"\0"
            if key not in taken:
                return key, end, self.rng.choice([READ, WRITE, READWRITE])
        return None

    # -- auth mutations (root or anyone while auth is off) -----------------
    def actor_admin(self):
        return ROOT if self.m.enabled else ANON

    def grant_perm(self, role, key, end, ptype):
        actor = self.actor_admin()
        desc = "RoleGrantPermission %s %s %s" % (role, PERM_NAMES[ptype], show_range(key, end))
        if role not in self.m.roles:
            self.add(actor, "role_grant", desc, ERR_ROLE_NOT_FOUND, role=role, key=key, end=end,
                     ptype=ptype)
            return
        # Never two permissions with one key in a role (see the docstring).
        assert key not in self.m.roles[role] or self.m.roles[role][key][0] == end
        self.m.roles[role][key] = (end, ptype)  # same key+end: the type is replaced
        self.add(actor, "role_grant", desc, OK, role=role, key=key, end=end, ptype=ptype)

    def revoke_perm(self, role, key, end):
        actor = self.actor_admin()
        desc = "RoleRevokePermission %s %s" % (role, show_range(key, end))
        if role not in self.m.roles:
            exp = ERR_ROLE_NOT_FOUND
        elif key in self.m.roles[role] and self.m.roles[role][key][0] == end:
            del self.m.roles[role][key]
            exp = OK
        else:
            exp = ERR_PERM_NOT_GRANTED
        self.add(actor, "role_revoke", desc, exp, role=role, key=key, end=end)

    def grant_role(self, user, role):
        actor = self.actor_admin()
        desc = "UserGrantRole %s %s" % (user, role)
        if user not in self.m.users:
            exp = ERR_USER_NOT_FOUND
        elif role not in self.m.roles:
            exp = ERR_ROLE_NOT_FOUND
        else:
            self.m.users[user]["roles"].add(role)  # granting twice is a no-op
            exp = OK
        self.add(actor, "user_grant", desc, exp, user=user, role=role)

    def revoke_role(self, user, role):
        actor = self.actor_admin()
        desc = "UserRevokeRole %s %s" % (user, role)
        if self.m.enabled and user == ROOT and role == "root":
            exp = ERR_AUTH_MGMT
        elif user not in self.m.users:
            exp = ERR_USER_NOT_FOUND
        elif role not in self.m.users[user]["roles"]:
            exp = ERR_ROLE_NOT_GRANTED
        else:
            self.m.users[user]["roles"].discard(role)
            exp = OK
        self.add(actor, "user_revoke", desc, exp, user=user, role=role)

    def authenticate(self, user, pw):
        exp = None
        if not self.m.enabled:
            exp = ERR_NOT_ENABLED
        elif user in self.m.users and self.m.users[user]["pw"] is None:
            exp = ERR_NO_PASSWORD_USER
        elif user in self.m.users and self.m.users[user]["pw"] == pw:
            self.m.token_ok[user] = True
            exp = OK
        else:
            exp = ERR_AUTH_FAILED
        # The step's actor is the user: the runner stores the token for it.
        self.add(user if exp == OK else ANON, "authenticate",
                 "Authenticate %s %s" % (user, "(right password)" if exp == OK else "(%s)" % pw),
                 exp, user=user, pw=pw)

    # -- the scenario ------------------------------------------------------
    def generate(self):
        rng, m = self.rng, self.m
        # Phase 1: auth off, no tokens anywhere.
        for k in rng.sample(KEYS, 6):
            self.add(ANON, "put", "seed Put %s" % show(k), "allow", key=k, value=self.value(),
                     prev_kv=False, lease=None)
        self.add(ANON, "auth_enable", "AuthEnable (no root user)", ERR_ROOT_USER)
        self.add(ANON, "authenticate", "Authenticate root (auth off)", ERR_NOT_ENABLED,
                 user=ROOT, pw=ROOT_PW)
        self.add(ANON, "user_add", "UserAdd '' (empty name)", ERR_USER_EMPTY, user="", pw="x")
        self.add(ANON, "role_add", "RoleAdd '' (empty name)", ERR_ROLE_EMPTY, role="")
        self.add(ANON, "user_add", "UserAdd root", OK, user=ROOT, pw=ROOT_PW)
        m.users[ROOT] = {"pw": ROOT_PW, "roles": set()}
        self.add(ANON, "user_add", "UserAdd root (again)", ERR_USER_EXISTS, user=ROOT, pw="other")
        self.add(ANON, "auth_enable", "AuthEnable (root has no root role)", ERR_ROOT_ROLE)
        self.add(ANON, "user_get", "UserGet root", OK, user=ROOT)
        self.add(ANON, "role_add", "RoleAdd root", OK, role="root")
        m.roles["root"] = {}
        self.grant_role(ROOT, "root")

        roles = ["r%d" % i for i in range(1, rng.randint(3, 5) + 1)]
        for r in roles:
            self.add(ANON, "role_add", "RoleAdd %s" % r, OK, role=r)
            m.roles[r] = {}
        self.add(ANON, "role_add", "RoleAdd %s (again)" % roles[0], ERR_ROLE_EXISTS, role=roles[0])
        for r in roles:
            for _ in range(rng.randint(2, 5)):
                p = self.gen_perm(r)
                if p:
                    self.grant_perm(r, *p)
            if m.roles[r] and rng.random() < 0.4:
                # Grant an existing permission again with another type: replaced.
                key = rng.choice(sorted(m.roles[r]))
                end, ptype = m.roles[r][key]
                self.grant_perm(r, key, end, rng.choice([t for t in PERM_NAMES if t != ptype]))
        self.grant_perm("nosuchrole", b"/a/x", b"", READ)

        users = ["u%d" % i for i in range(1, rng.randint(3, 5) + 1)]
        for u in users:
            self.add(ANON, "user_add", "UserAdd %s" % u, OK, user=u, pw="pw-" + u)
            m.users[u] = {"pw": "pw-" + u, "roles": set()}
        self.add(ANON, "user_add_nopw", "UserAdd nopw (no_password option)", OK, user="nopw")
        m.users["nopw"] = {"pw": None, "roles": set()}
        admin = None
        if rng.random() < 0.5:
            admin = "adm"
            self.add(ANON, "user_add", "UserAdd adm", OK, user=admin, pw="pw-adm")
            m.users[admin] = {"pw": "pw-adm", "roles": set()}
            self.grant_role(admin, "root")
        for u in users:
            for r in rng.sample(roles, rng.randint(0, 3)):
                self.grant_role(u, r)
        self.grant_role("ghost", roles[0])
        self.grant_role(users[0], "nosuchrole")
        granted = [(u, r) for u in users for r in m.user_roles(u)]
        if granted:
            self.grant_role(*rng.choice(granted))  # already granted: a no-op

        # Revocations: some that work, some of things never granted.
        with_perms = [r for r in roles if m.roles[r]]
        for r in rng.sample(with_perms, min(len(with_perms), rng.randint(1, 2))):
            key = rng.choice(sorted(m.roles[r]))
            self.revoke_perm(r, key, m.roles[r][key][0])
        r = rng.choice(roles)
        self.revoke_perm(r, b"/never/granted", b"")
        if m.roles[r]:
            key = rng.choice(sorted(m.roles[r]))
            end = m.roles[r][key][0]
            # Same key, other range_end: not the granted permission.
            self.revoke_perm(r, key, b"\0" if end != b"\0" else b"")
        self.revoke_perm("nosuchrole", b"/a/x", b"")
        granted = [(u, r) for u in users for r in m.user_roles(u)]
        for u, r in rng.sample(granted, min(len(granted), rng.randint(1, 2))):
            self.revoke_role(u, r)
        u = rng.choice(users)
        missing = [r for r in roles if r not in m.users[u]["roles"]]
        if missing:
            self.revoke_role(u, rng.choice(missing))
        self.revoke_role("ghost", roles[0])

        # Reads of the auth state, and lookups of things that do not exist.
        for u in [ROOT] + users + ["nopw"]:
            self.add(ANON, "user_get", "UserGet %s" % u, OK, user=u)
        for r in ["root"] + roles:
            self.add(ANON, "role_get", "RoleGet %s" % r, OK, role=r)
        self.add(ANON, "user_list", "UserList", OK)
        self.add(ANON, "role_list", "RoleList", OK)
        self.add(ANON, "user_get", "UserGet ghost", ERR_USER_NOT_FOUND, user="ghost")
        self.add(ANON, "role_get", "RoleGet nosuchrole", ERR_ROLE_NOT_FOUND, role="nosuchrole")
        self.add(ANON, "user_delete", "UserDelete ghost", ERR_USER_NOT_FOUND, user="ghost")
        self.add(ANON, "role_delete", "RoleDelete nosuchrole", ERR_ROLE_NOT_FOUND,
                 role="nosuchrole")

        # Phase 2: auth on.
        self.add(ANON, "auth_enable", "AuthEnable", OK)
        m.enabled = True
        self.add(ANON, "auth_enable", "AuthEnable (again, no token)", ERR_USER_EMPTY)
        # Logging in.
        self.authenticate(ROOT, "wrong")
        self.authenticate("ghost", "pw")
        self.authenticate("nopw", "")
        self.authenticate("nopw", "something")
        self.authenticate(ROOT, ROOT_PW)
        # A client without a token and one with a bogus token (root's token
        # is needed by the watch steps).
        for actor in (ANON, BOGUS):
            for _ in range(10):
                self.gen_op(actor)
            self.gen_watch(actor)
            self.gen_auth_attempt(actor)
            for op in ("hashkv", "defrag"):
                self.add(actor, op, op, m.admin_verdict(actor))
        # No token, no name: etcd's UserGet check compares the name with the
        # (empty) caller's and lets it through to "not found".
        self.add(ANON, "user_get", "UserGet '' (no token, empty name)", ERR_USER_NOT_FOUND,
                 user="")
        for u in users + ([admin] if admin else []):
            self.authenticate(u, m.users[u]["pw"])
        # AuthEnable twice is fine; what even root may not do while auth is on.
        self.add(ROOT, "auth_enable", "AuthEnable (already on)", OK)
        self.add(ROOT, "user_delete", "UserDelete root", ERR_AUTH_MGMT, user=ROOT)
        self.add(ROOT, "role_delete", "RoleDelete root", ERR_AUTH_MGMT, role="root")
        self.revoke_role(ROOT, "root")

        # Every user once through the calls whose refusal looks special
        # (Maintenance's "auth: ..." errors, reads of one's own user and
        # roles, a watch), root once through every admin-only call, and one
        # permission and one role taken away under a live token.
        for u in users + ([admin] if admin else []):
            op = rng.choice(sorted(MAINT_ADMIN_OPS))
            self.add(u, op, op, m.admin_verdict(u))
            self.add(u, "user_get", "UserGet %s (self)" % u, "allow", user=u)
            own = m.user_roles(u)
            r = rng.choice(own) if own else rng.choice(roles)
            self.add(u, "role_get", "RoleGet %s" % r,
                     "allow" if own else m.admin_verdict(u), role=r)
            self.gen_watch(u)
        for op in sorted(MAINT_ADMIN_OPS) + ["status", "member_list", "alarm"]:
            self.add(ROOT, op, op, "allow")
        self.add(ROOT, "move_leader", "MoveLeader to member 1 (no such member)", "allow")
        self.add(ROOT, "compact", "Compact (highest revision seen - 1)", "allow")
        self.add(ROOT, "user_list", "UserList", "allow")
        self.add(ROOT, "role_list", "RoleList", "allow")
        self.gen_watch(ROOT)
        self.gen_mutation(users, "revoke_perm")
        self.gen_mutation(users, "revoke_role")

        # The main mix: every actor's own calls, root changing things.
        actors = list(users) + [ROOT] * 2 + ([admin] if admin else [])
        for _ in range(self.n_ops):
            live = [a for a in actors if a in m.users]
            if rng.random() < 0.07:
                self.gen_mutation(users)
                continue
            actor = rng.choice(live)
            if rng.random() < 0.03:
                actor = rng.choice([ANON, BOGUS])
            self.gen_op(actor)

        # Phase 3: auth off again.
        live = [u for u in users if u in m.users]
        if live:
            self.add(live[0], "auth_disable", "AuthDisable (not root)",
                     m.admin_verdict(live[0]))
        self.add(ANON, "auth_disable", "AuthDisable (no token)", "no-user")
        self.add(ROOT, "auth_disable", "AuthDisable", OK)
        m.enabled = False
        m.token_ok = {}
        self.add(ANON, "auth_disable", "AuthDisable (again)", OK)
        self.add(ANON, "authenticate", "Authenticate root (auth off again)", ERR_NOT_ENABLED,
                 user=ROOT, pw=ROOT_PW)
        for _ in range(12):
            self.gen_op(ANON)
        self.gen_watch(ANON)
        self.add(ANON, "user_list", "UserList", OK)
        self.add(ANON, "role_list", "RoleList", OK)
        return self.steps

    # -- one random call by an actor ----------------------------------------
    def gen_op(self, actor):
        rng = self.rng
        kind = rng.choices(
            ["range", "put", "delete", "txn", "watch", "lease", "compact", "maint", "auth"],
            weights=[22, 14, 7, 13, 5, 9, 1.5, 6, 8])[0]
        getattr(self, "gen_" + kind)(actor)

    def gen_range(self, actor, target=None):
        rng, m = self.rng, self.m
        key, end = target or self.target_for(actor, "read")
        opts = {}
        flags = []
        r = rng.random()
        if r < 0.2:
            opts["keys_only"] = True
            flags.append("keys_only")
        elif r < 0.35:
            opts["count_only"] = True
            flags.append("count_only")
        if rng.random() < 0.25:
            opts["serializable"] = True
            flags.append("serializable")
        if end and rng.random() < 0.15:
            opts["limit"] = 1
            flags.append("limit=1")
        self.add(actor, "range", "Range %s %s" % (show_range(key, end), " ".join(flags)),
                 m.verdict(actor, [("read", key, end)]), key=key, end=end, opts=opts)

    def gen_put(self, actor, key=None):
        rng, m = self.rng, self.m
        key = key or self.key_for(actor, "write")
        prev = rng.random() < 0.3
        lease = None
        if self.n_leases and rng.random() < 0.2:
            lease = "L%d" % rng.randint(1, self.n_leases)
        checks = [("write", key, b"")] + ([("read", key, b"")] if prev else [])
        exp = m.verdict(actor, checks)
        if lease and exp == "allow" and not m.is_admin(actor):
            exp = None  # also depends on the keys already attached to the lease
        if lease and actor == ANON:
            exp = "no-user" if m.enabled else "allow"
        self.add(actor, "put", "Put %s%s%s" % (show(key), " prev_kv" if prev else "",
                                              " lease=" + lease if lease else ""),
                 exp, key=key, value=self.value(), prev_kv=prev, lease=lease)

    def gen_delete(self, actor, target=None):
        rng, m = self.rng, self.m
        key, end = target or self.target_for(actor, "write")
        prev = rng.random() < 0.35
        checks = [("write", key, end)] + ([("read", key, end)] if prev else [])
        self.add(actor, "delete", "DeleteRange %s%s" % (show_range(key, end),
                                                        " prev_kv" if prev else ""),
                 m.verdict(actor, checks), key=key, end=end, prev_kv=prev)

    # Txn: ops are ("range", key, end) / ("put", key, value, prev_kv) /
    # ("delete", key, end, prev_kv) / ("txn", compares, success, failure);
    # compares are (key, end, target, result, value).
    def gen_compare(self, actor):
        rng = self.rng
        if rng.random() < 0.8:
            key, end = self.key_for(actor, "read"), b""
        else:
            p = rng.choice(PREFIXES)
            key, end = p, prefix_end(p)
        target = rng.choice(["VERSION", "VALUE", "MOD", "CREATE"])
        result = rng.choice(["EQUAL", "NOT_EQUAL", "GREATER", "LESS"])
        if target == "VALUE":
            value = rng.choice([b"v1", b"v3", b"zzz", b""])
        elif target == "VERSION":
            value = rng.randint(0, 2)
        else:
            value = rng.choice([0, 5, 1000])
        return (key, end, target, result, value)

    def gen_txn_ops(self, actor, used, nested_ok):
        """Up to 3 ops of one branch; `used` holds the write intervals of the
        whole txn, kept disjoint (etcd refuses overlapping writes in a txn
        with "duplicate key given in txn request")."""
        rng, m = self.rng, self.m
        ops = []
        for _ in range(rng.randint(0, 3)):
            kind = rng.choice(["range", "range", "put", "put", "delete"] +
                              (["txn"] if nested_ok else []))
            if kind == "range":
                key, end = self.target_for(actor, "read")
                ops.append(("range", key, end))
            elif kind == "put":
                key = self.key_for(actor, "write")
                ivl = perm_interval(key, b"")
                if any(overlaps(ivl, u) for u in used):
                    continue
                used.append(ivl)
                # prev_kv only where the user can read the key: etcd 3.4.23
                # does not check that READ inside a txn, later releases do.
                prev = rng.random() < 0.3 and m.verdict(actor, [("read", key, b"")]) != "deny"
                ops.append(("put", key, self.value(), prev))
            elif kind == "delete":
                key, end = self.target_for(actor, "write")
                ivl = perm_interval(key, end)
                if any(overlaps(ivl, u) for u in used):
                    continue
                used.append(ivl)
                ops.append(("delete", key, end, rng.random() < 0.3))
            else:
                ops.append(self.gen_txn_tree(actor, used, nested_ok=False))
        return ops

    def gen_txn_tree(self, actor, used, nested_ok):
        cmps = [self.gen_compare(actor) for _ in range(self.rng.randint(0, 2))]
        success = self.gen_txn_ops(actor, used, nested_ok)
        failure = self.gen_txn_ops(actor, used, nested_ok)
        return ("txn", cmps, success, failure)

    @staticmethod
    def txn_checks(tree, nested):
        """The permission checks of a txn: of its own level, or (nested=True)
        of the txns nested in it."""
        _, cmps, success, failure = tree
        own, deep = [("read", c[0], c[1]) for c in cmps], []
        for op in success + failure:
            if op[0] == "range":
                own.append(("read", op[1], op[2]))
            elif op[0] == "put":
                own.append(("write", op[1], b""))
                if op[3]:
                    own.append(("read", op[1], b""))
            elif op[0] == "delete":
                own.append(("write", op[1], op[2]))
                if op[3]:
                    own.append(("read", op[1], op[2]))
            else:
                deep += Generator.txn_checks(op, False) + Generator.txn_checks(op, True)
        return deep if nested else own

    def gen_txn(self, actor):
        m = self.m
        tree = self.gen_txn_tree(actor, [], nested_ok=self.rng.random() < 0.35)
        own, deep = self.txn_checks(tree, False), self.txn_checks(tree, True)
        if deep and m.verdict(actor, deep) == "deny" and m.verdict(actor, own) != "deny":
            # etcd 3.4.23 would let this through (nested ops unchecked), later
            # releases refuse it: drop the nested txns.
            _, cmps, s, f = tree
            tree = ("txn", cmps, [o for o in s if o[0] != "txn"], [o for o in f if o[0] != "txn"])
            deep = []
        if not tree[1] and not tree[2] and not tree[3]:
            key, end = self.target_for(actor, "read")
            tree = ("txn", [], [("range", key, end)], [])
        checks = self.txn_checks(tree, False) + deep
        self.add(actor, "txn", "Txn " + describe_txn(tree), m.verdict(actor, checks), tree=tree)

    def gen_watch(self, actor):
        """Create a watch with the actor's token; root (or nobody, with auth
        off) then puts a key inside it; the step records the create answer and
        the events seen.  The put always happens, so the state never depends
        on the watch's outcome."""
        m = self.m
        key, end = self.target_for(actor, "read")
        if end == b"\0" and m.verdict(actor, [("read", key, b"")]) != \
                m.verdict(actor, [("read", key, end)]):
            # etcd before 3.5.33 checks a [key, +inf) watch as if it were
            # on key alone: only watch from-key where both checks agree.
            end = b""
        ivl = perm_interval(key, end)
        inside = [k for k in KEYS if overlaps(ivl, (k, k + b"\0"))]
        trigger = self.rng.choice(inside) if inside else key
        self.add(actor, "watch", "Watch %s (then root puts %s)" % (show_range(key, end),
                                                                   show(trigger)),
                 m.verdict(actor, [("read", key, end)]), key=key, end=end, trigger=trigger,
                 value=self.value(), trigger_actor=ROOT if m.enabled else ANON)

    def gen_lease(self, actor):
        rng, m = self.rng, self.m
        kind = rng.choices(["grant", "put", "revoke", "ttl", "leases"],
                           weights=[3, 3, 2, 1.5, 0.5])[0]
        st = m.token_state(actor)
        if st == "no-user" or (st == "bad-token" and kind in ("ttl", "leases")) or \
                (kind == "leases" and m.admin_verdict(actor) != "allow"):
            # Without a token etcd 3.4 grants/revokes leases and answers
            # TimeToLive/Leases, 3.5.28+ refuses ("user name is empty");
            # 3.5 checks a bad token on TimeToLive/Leases, 3.4 does not; 3.5
            # answers Leases only if the user can read every lease's keys.
            self.gen_range(actor)
            return
        if kind == "grant" or not self.n_leases:
            self.n_leases += 1
            name = "L%d" % self.n_leases
            st = m.token_state(actor)
            self.add(actor, "lease_grant", "LeaseGrant %s ttl=120" % name,
                     "bad-token" if st == "bad-token" else "allow", lease=name, ttl=120)
            return
        name = "L%d" % rng.randint(1, self.n_leases)
        if kind == "put":
            key = self.key_for(actor, "write")
            exp = m.verdict(actor, [("write", key, b"")])
            if exp == "allow" and not m.is_admin(actor):
                exp = None  # also depends on the keys already attached to the lease
            if actor == ANON and m.enabled:
                exp = "no-user"
            self.add(actor, "put", "Put %s lease=%s" % (show(key), name), exp, key=key,
                     value=self.value(), prev_kv=False, lease=name)
        elif kind == "revoke":
            st = m.token_state(actor)
            exp = st if st == "bad-token" else ("allow" if st == "allow" or m.is_admin(actor)
                                                else None)
            self.add(actor, "lease_revoke", "LeaseRevoke %s" % name, exp, lease=name)
        elif kind == "ttl":
            # keys=True is checked (READ on the lease's keys) since etcd 3.5
            # but not in 3.4.23: only users with the root role ask for keys.
            keys = m.admin_verdict(actor) == "allow"
            self.add(actor, "lease_ttl", "LeaseTimeToLive %s%s" % (name, " keys" if keys else ""),
                     "allow", lease=name, keys=keys)
        else:
            self.add(actor, "lease_leases", "LeaseLeases", "allow")

    def gen_compact(self, actor):
        if self.m.admin_verdict(actor) != "allow":
            # etcd 3.4 lets anyone compact (even without a token), 3.5.28+
            # only the root role.
            self.gen_range(actor)
            return
        self.add(actor, "compact", "Compact (highest revision seen - 1)", "allow")

    def gen_maint(self, actor):
        rng, m = self.rng, self.m
        kind = rng.choice(["status", "alarm", "hashkv", "hash", "defrag", "snapshot",
                           "member_list", "move_leader"])
        st = m.token_state(actor)
        if kind in ("status", "member_list", "alarm") and st not in (None, "allow"):
            # etcd 3.4 answers Status and MemberList without a token or with
            # a bad one, and Alarm without a token (with a bad one: Unknown
            # "auth: invalid auth token"); 3.5.28+ wants a valid token.
            self.gen_range(actor)
        elif kind in ("status", "member_list"):
            self.add(actor, kind, kind, "allow")
        elif kind == "alarm":
            self.add(actor, "alarm", "Alarm GET", "allow")
        elif kind == "move_leader":
            # etcd 3.4 does not check MoveLeader at all, 3.5.28+ wants the
            # root role: only those who have it ask (for a member that does
            # not exist: "bad leader transferee").
            if m.admin_verdict(actor) != "allow":
                self.gen_range(actor)
                return
            self.add(actor, "move_leader", "MoveLeader to member 1 (no such member)", "allow")
        else:
            self.add(actor, kind, kind, m.admin_verdict(actor))

    def gen_auth(self, actor):
        """Auth reads (allowed for oneself and one's roles) or, for users
        without the root role, an admin-only call."""
        rng, m = self.rng, self.m
        users = sorted(m.users) + ["ghost"]
        roles = sorted(m.roles) + ["nosuchrole"]
        kind = rng.choice(["user_list", "role_list", "user_get", "user_get_self", "role_get",
                           "role_get_own", "attempt"])
        admin = m.admin_verdict(actor)
        if kind in ("user_list", "role_list"):
            self.add(actor, kind, kind, admin)
        elif kind in ("user_get", "user_get_self"):
            u = actor if kind == "user_get_self" and actor in m.users else rng.choice(users)
            exp = admin if u != actor or m.token_state(actor) else "allow"
            self.add(actor, "user_get", "UserGet %s" % u, exp, user=u)
        elif kind in ("role_get", "role_get_own"):
            own = m.user_roles(actor) if actor in m.users else []
            r = rng.choice(own) if kind == "role_get_own" and own else rng.choice(roles)
            exp = admin
            if exp == "deny" and r in own:
                exp = "allow"
            self.add(actor, "role_get", "RoleGet %s" % r, exp, role=r)
        elif admin != "allow":
            self.gen_auth_attempt(actor)

    def gen_auth_attempt(self, actor):
        """An admin-only auth call by someone who is not an admin (refused
        before it is looked at, so it never changes anything)."""
        rng, m = self.rng, self.m
        exp = m.admin_verdict(actor)
        assert exp != "allow"
        kind = rng.choice(["user_add", "role_add", "passwd", "grant_perm", "grant_role",
                           "user_delete", "auth_disable"])
        if kind == "user_add":
            self.add(actor, "user_add", "UserAdd eve (not admin)", exp, user="eve", pw="x")
        elif kind == "role_add":
            self.add(actor, "role_add", "RoleAdd evil (not admin)", exp, role="evil")
        elif kind == "passwd":
            u = actor if actor in m.users else ROOT
            self.add(actor, "user_passwd", "UserChangePassword %s (not admin)" % u, exp,
                     user=u, pw="hijack")
        elif kind == "grant_perm":
            r = rng.choice(sorted(m.roles))
            self.add(actor, "role_grant", "RoleGrantPermission %s READWRITE [\\0, +inf) "
                     "(not admin)" % r, exp, role=r, key=b"\0", end=b"\0", ptype=READWRITE)
        elif kind == "grant_role":
            u = actor if actor in m.users else ROOT
            self.add(actor, "user_grant", "UserGrantRole %s root (not admin)" % u, exp,
                     user=u, role="root")
        elif kind == "user_delete":
            self.add(actor, "user_delete", "UserDelete root (not admin)", exp, user=ROOT)
        else:
            self.add(actor, "auth_disable", "AuthDisable (not admin)", exp)

    def targeted_op(self, user, key, end):
        """The affected user's next call, on the range root just changed."""
        if self.rng.random() < 0.5:
            self.gen_range(user, (key, end))
        elif end == b"":
            self.gen_put(user, key)
        else:
            self.gen_delete(user, (key, end))

    def gen_mutation(self, users, kind=None):
        """Root changes the auth state while users hold tokens; the affected
        user's next call (with the token it already has) follows."""
        rng, m = self.rng, self.m
        live = [u for u in users if u in m.users]
        roles = sorted(r for r in m.roles if r != "root")
        kind = kind or rng.choice(["revoke_perm", "revoke_perm", "grant_perm", "revoke_role",
                                   "grant_role", "passwd", "delete_role", "delete_user"])
        if kind == "revoke_perm":
            cand = [(r, k) for r in roles for k in sorted(m.roles[r])
                    if any(r in m.users[u]["roles"] for u in live)]
            if not cand:
                return
            r, key = rng.choice(cand)
            end = m.roles[r][key][0]
            self.revoke_perm(r, key, end)
            u = rng.choice([u for u in live if r in m.users[u]["roles"]])
            self.targeted_op(u, key, end)
        elif kind == "grant_perm":
            holders = [(r, u) for r in roles for u in live if r in m.users[u]["roles"]]
            if not holders:
                return
            r, u = rng.choice(holders)
            p = self.gen_perm(r)
            if not p:
                return
            self.grant_perm(r, *p)
            self.targeted_op(u, p[0], p[1])
        elif kind == "revoke_role":
            cand = [(u, r) for u in live for r in m.user_roles(u)]
            if not cand:
                return
            u, r = rng.choice(cand)
            perms = sorted(m.roles.get(r, {}).items())
            self.revoke_role(u, r)
            if perms:
                key, (end, _) = rng.choice(perms)
                self.targeted_op(u, key, end)
            else:
                self.gen_op(u)
        elif kind == "grant_role":
            cand = [(u, r) for u in live for r in roles if r not in m.users[u]["roles"]]
            if not cand:
                return
            u, r = rng.choice(cand)
            self.grant_role(u, r)
            perms = sorted(m.roles[r].items())
            if perms:
                key, (end, _) = rng.choice(perms)
                self.targeted_op(u, key, end)
        elif kind == "passwd":
            if not live or self.pw_changes >= 2:
                return
            self.pw_changes += 1
            u = rng.choice(live)
            old, new = m.users[u]["pw"], "pw2-%s-%d" % (u, len(self.steps))
            self.add(ROOT, "user_passwd", "UserChangePassword %s" % u, OK, user=u, pw=new)
            m.users[u]["pw"] = new
            m.token_ok[u] = False
            self.gen_range(u)              # old token: refused
            self.authenticate(u, old)      # old password: refused
            self.authenticate(u, new)      # new token
            self.gen_op(u)
        elif kind == "delete_role":
            if self.deleted_role or len(roles) < 2:
                return
            self.deleted_role = True
            r = rng.choice(roles)
            holders = [u for u in live if r in m.users[u]["roles"]]
            perms = sorted(m.roles[r].items())
            self.add(ROOT, "role_delete", "RoleDelete %s" % r, OK, role=r)
            del m.roles[r]
            for u in m.users:
                m.users[u]["roles"].discard(r)
            if holders and perms:
                key, (end, _) = rng.choice(perms)
                self.targeted_op(rng.choice(holders), key, end)
            self.add(ROOT, "role_get", "RoleGet %s (deleted)" % r, ERR_ROLE_NOT_FOUND, role=r)
        else:
            if self.deleted_user or len(live) < 3:
                return
            self.deleted_user = True
            u = rng.choice(live)
            self.add(ROOT, "user_delete", "UserDelete %s" % u, OK, user=u)
            del m.users[u]
            m.token_ok[u] = False
            self.gen_range(u)              # its token died with it
            self.authenticate(u, "pw-" + u)
            self.add(ROOT, "user_get", "UserGet %s (deleted)" % u, ERR_USER_NOT_FOUND, user=u)


def describe_txn(tree):
    _, cmps, success, failure = tree

    def op(o):
        if o[0] == "range":
            return "get %s" % show_range(o[1], o[2])
        if o[0] == "put":
            return "put %s%s" % (show(o[1]), " prev_kv" if o[3] else "")
        if o[0] == "delete":
            return "del %s%s" % (show_range(o[1], o[2]), " prev_kv" if o[3] else "")
        return "txn(%s)" % describe_txn(o)
    c = ", ".join("%s(%s) %s %r" % (t, show_range(k, e), r, v) for k, e, t, r, v in cmps)
    return "if [%s] then [%s] else [%s]" % (c, "; ".join(op(o) for o in success),
                                           "; ".join(op(o) for o in failure))


def generate(seed, ops=None):
    return Generator(seed, ops).generate()


# ------------------------------------------------------------------ runner
CMP_RESULT = {"EQUAL": pb.Compare.EQUAL, "NOT_EQUAL": pb.Compare.NOT_EQUAL,
              "GREATER": pb.Compare.GREATER, "LESS": pb.Compare.LESS}
CMP_TARGET = {"VERSION": pb.Compare.VERSION, "VALUE": pb.Compare.VALUE,
              "MOD": pb.Compare.MOD, "CREATE": pb.Compare.CREATE}


class Runner:
    """Runs steps against one server.  `channel` is a grpc channel."""

    def __init__(self, channel, timeout=TIMEOUT):
        self.ch = channel
        self.timeout = timeout
        self.kv = rpcs.KVStub(channel)
        self.auth = rpcs.AuthStub(channel)
        self.lease = rpcs.LeaseStub(channel)
        self.maint = rpcs.MaintenanceStub(channel)
        self.cluster = rpcs.ClusterStub(channel)
        self.watch = rpcs.WatchStub(channel)
        self.tokens = {}      # user -> its latest token (never compared)
        self.lease_id = {}    # "L3" -> the ID this server chose
        self.lease_name = {}  # and back
        self.max_rev = 0      # highest header revision seen

    # -- plumbing ----------------------------------------------------------
    def md(self, actor):
        if actor == ANON:
            return None
        if actor == BOGUS:
            return [("token", BOGUS_TOKEN)]
        tok = self.tokens.get(actor)
        return [("token", tok)] if tok else None

    def rev(self, header):
        self.max_rev = max(self.max_rev, header.revision)
        return header.revision

    def lid(self, name):
        """A lease symbol's ID; a lease whose grant failed gets an ID no
        server will have chosen."""
        if name not in self.lease_id:
            return 0x7e570000 + int(name[1:])
        return self.lease_id[name]

    def lname(self, lease_id):
        if lease_id == 0:
            return None
        return self.lease_name.get(lease_id, "L?")

    def nkv(self, kv):
        return (show(kv.key), show(kv.value), kv.create_revision, kv.mod_revision, kv.version,
                self.lname(kv.lease))

    def run(self, steps, on_step=None):
        out = []
        for st in steps:
            try:
                res = getattr(self, "op_" + st.op)(st, self.md(st.actor))
                outcome = ("ok", res)
            except grpc.RpcError as e:
                outcome = ("err", e.code().name, e.details())
            out.append(outcome)
            if on_step:
                on_step(st, outcome)
        return out

    # -- KV ----------------------------------------------------------------
    def range_req(self, key, end, opts):
        return pb.RangeRequest(key=key, range_end=end, **opts)

    def norm_range(self, r):
        return {"rev": self.rev(r.header), "count": r.count, "more": r.more,
                "kvs": [self.nkv(kv) for kv in r.kvs]}

    def op_range(self, st, md):
        a = st.args
        r = self.kv.Range(self.range_req(a["key"], a["end"], a["opts"]), metadata=md,
                          timeout=self.timeout)
        return self.norm_range(r)

    def put_req(self, key, value, prev_kv, lease):
        return pb.PutRequest(key=key, value=value, prev_kv=prev_kv,
                             lease=self.lid(lease) if lease else 0)

    def norm_put(self, r):
        return {"rev": self.rev(r.header),
                "prev": self.nkv(r.prev_kv) if r.HasField("prev_kv") else None}

    def op_put(self, st, md):
        a = st.args
        r = self.kv.Put(self.put_req(a["key"], a["value"], a["prev_kv"], a["lease"]),
                        metadata=md, timeout=self.timeout)
        return self.norm_put(r)

    def norm_delete(self, r):
        return {"rev": self.rev(r.header), "deleted": r.deleted,
                "prev": [self.nkv(kv) for kv in r.prev_kvs]}

    def op_delete(self, st, md):
        a = st.args
        r = self.kv.DeleteRange(pb.DeleteRangeRequest(key=a["key"], range_end=a["end"],
                                                      prev_kv=a["prev_kv"]),
                                metadata=md, timeout=self.timeout)
        return self.norm_delete(r)

    def txn_req(self, tree):
        _, cmps, success, failure = tree
        compare = []
        for key, end, target, result, value in cmps:
            c = pb.Compare(key=key, range_end=end, target=CMP_TARGET[target],
                           result=CMP_RESULT[result])
            if target == "VALUE":
                c.value = value
            elif target == "VERSION":
                c.version = value
            elif target == "MOD":
                c.mod_revision = value
            else:
                c.create_revision = value
            compare.append(c)

        def ops(lst):
            res = []
            for o in lst:
                if o[0] == "range":
                    res.append(pb.RequestOp(request_range=pb.RangeRequest(key=o[1],
                                                                          range_end=o[2])))
                elif o[0] == "put":
                    res.append(pb.RequestOp(request_put=pb.PutRequest(key=o[1], value=o[2],
                                                                      prev_kv=o[3])))
                elif o[0] == "delete":
                    res.append(pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(
                        key=o[1], range_end=o[2], prev_kv=o[3])))
                else:
                    res.append(pb.RequestOp(request_txn=self.txn_req(o)))
            return res
        return pb.TxnRequest(compare=compare, success=ops(success), failure=ops(failure))

    def norm_txn(self, r):
        resps = []
        for op in r.responses:
            which = op.WhichOneof("response")
            if which == "response_range":
                resps.append(("range", self.norm_range(op.response_range)))
            elif which == "response_put":
                resps.append(("put", self.norm_put(op.response_put)))
            elif which == "response_delete_range":
                resps.append(("delete", self.norm_delete(op.response_delete_range)))
            else:
                resps.append(("txn", self.norm_txn(op.response_txn)))
        return {"rev": self.rev(r.header), "succeeded": r.succeeded, "responses": resps}

    def op_txn(self, st, md):
        r = self.kv.Txn(self.txn_req(st.args["tree"]), metadata=md, timeout=self.timeout)
        return self.norm_txn(r)

    def op_compact(self, st, md):
        rev = max(self.max_rev - 1, 1)
        r = self.kv.Compact(pb.CompactionRequest(revision=rev), metadata=md,
                            timeout=self.timeout)
        return {"rev": self.rev(r.header), "compacted_to": rev}

    # -- Watch -------------------------------------------------------------
    def op_watch(self, st, md):
        """One watch stream with the actor's token: the create answer, then
        root's put and the events it causes (only if the watch lives)."""
        a = st.args
        reqs, resps = queue.Queue(), queue.Queue()
        reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=a["key"],
                                                                      range_end=a["end"])))

        def req_iter():
            while True:
                r = reqs.get()
                if r is None:
                    return
                yield r
        call = self.watch.Watch(req_iter(), metadata=md, timeout=4 * WATCH_WAIT + 5)

        def reader():
            try:
                for r in call:
                    resps.put(r)
            except grpc.RpcError as e:
                resps.put(e)
            resps.put(None)
        t = threading.Thread(target=reader, daemon=True)
        t.start()

        def next_resp(wait=WATCH_WAIT):
            try:
                r = resps.get(timeout=wait)
            except queue.Empty:
                return "timeout"
            if isinstance(r, grpc.RpcError):
                return ("stream error", r.code().name, r.details())
            return "stream ended" if r is None else r

        try:
            first = next_resp()
            if isinstance(first, pb.WatchResponse):
                created = {"rev": self.rev(first.header), "created": first.created,
                           "canceled": first.canceled, "cancel_reason": first.cancel_reason,
                           "watch_id": first.watch_id, "events": len(first.events)}
            else:
                created = first
            # The trigger put, done whatever happened to the watch.
            tmd = self.md(a["trigger_actor"])
            try:
                put = self.kv.Put(pb.PutRequest(key=a["trigger"], value=a["value"]),
                                  metadata=tmd, timeout=self.timeout)
                self.rev(put.header)
            except grpc.RpcError as e:
                return {"create": created, "trigger put failed": (e.code().name, e.details())}
            events = []
            if isinstance(first, pb.WatchResponse) and first.canceled:
                # A refused watch must not deliver the put: anything that
                # arrives within a moment is recorded (etcd sends nothing).
                r = next_resp(REFUSED_WATCH_WAIT)
                if r != "timeout":
                    events.append(r if not isinstance(r, pb.WatchResponse) else
                                  ("unexpected response", str(r)))
            elif isinstance(first, pb.WatchResponse) and first.created:
                deadline = time.monotonic() + WATCH_WAIT
                while not events and time.monotonic() < deadline:
                    r = next_resp()
                    if not isinstance(r, pb.WatchResponse):
                        events.append(r)
                        break
                    for ev in r.events:
                        events.append((kv_pb2.Event.EventType.Name(ev.type), self.nkv(ev.kv)))
            return {"create": created, "events": events}
        finally:
            reqs.put(None)
            call.cancel()
            t.join(5)

    # -- Lease -------------------------------------------------------------
    def op_lease_grant(self, st, md):
        r = self.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=st.args["ttl"]), metadata=md,
                                  timeout=self.timeout)
        name = st.args["lease"]
        self.lease_id[name] = r.ID
        self.lease_name[r.ID] = name
        return {"rev": self.rev(r.header), "id": name, "ttl": r.TTL, "error": r.error}

    def op_lease_revoke(self, st, md):
        r = self.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=self.lid(st.args["lease"])),
                                   metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header)}

    def op_lease_ttl(self, st, md):
        r = self.lease.LeaseTimeToLive(
            pb.LeaseTimeToLiveRequest(ID=self.lid(st.args["lease"]), keys=st.args["keys"]),
            metadata=md, timeout=self.timeout)
        return {"id": self.lname(r.ID) if r.ID in self.lease_name else st.args["lease"],
                "ttl": "positive" if r.TTL > 0 else r.TTL, "granted": r.grantedTTL,
                "keys": sorted(show(k) for k in r.keys)}

    def op_lease_leases(self, st, md):
        r = self.lease.LeaseLeases(pb.LeaseLeasesRequest(), metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header), "leases": sorted(self.lname(x.ID) for x in r.leases)}

    # -- Maintenance / Cluster ---------------------------------------------
    def op_status(self, st, md):
        self.maint.Status(pb.StatusRequest(), metadata=md, timeout=self.timeout)
        return "ok"

    def op_alarm(self, st, md):
        r = self.maint.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET), metadata=md,
                             timeout=self.timeout)
        return {"alarms": [pb.AlarmType.Name(x.alarm) for x in r.alarms]}

    def op_hashkv(self, st, md):
        r = self.maint.HashKV(pb.HashKVRequest(revision=0), metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header), "compact_revision": r.compact_revision}

    def op_hash(self, st, md):
        self.maint.Hash(pb.HashRequest(), metadata=md, timeout=self.timeout)
        return "ok"

    def op_defrag(self, st, md):
        self.maint.Defragment(pb.DefragmentRequest(), metadata=md, timeout=self.timeout)
        return "ok"

    def op_snapshot(self, st, md):
        chunks = 0
        for _ in self.maint.Snapshot(pb.SnapshotRequest(), metadata=md, timeout=self.timeout):
            chunks += 1
        return "ok" if chunks else "empty"

    def op_move_leader(self, st, md):
        self.maint.MoveLeader(pb.MoveLeaderRequest(targetID=1), metadata=md,
                              timeout=self.timeout)
        return "ok"

    def op_member_list(self, st, md):
        r = self.cluster.MemberList(pb.MemberListRequest(), metadata=md, timeout=self.timeout)
        return {"members": len(r.members)}

    # -- Auth ----------------------------------------------------------------
    def op_auth_enable(self, st, md):
        r = self.auth.AuthEnable(pb.AuthEnableRequest(), metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header)}

    def op_auth_disable(self, st, md):
        r = self.auth.AuthDisable(pb.AuthDisableRequest(), metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header)}

    def op_authenticate(self, st, md):
        # Logging in sends no token: etcd 3.4 checks a token sent along even
        # on Authenticate (an invalidated one makes the login fail), 3.5 not.
        md = None
        r = self.auth.Authenticate(pb.AuthenticateRequest(name=st.args["user"],
                                                          password=st.args["pw"]),
                                   metadata=md, timeout=self.timeout)
        self.tokens[st.args["user"]] = r.token
        return {"rev": self.rev(r.header), "token": "<%s>" % ("set" if r.token else "empty")}

    def op_user_add(self, st, md):
        r = self.auth.UserAdd(pb.AuthUserAddRequest(name=st.args["user"],
                                                    password=st.args["pw"]),
                              metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header)}

    def op_user_add_nopw(self, st, md):
        # The python-etcd3 stubs predate AuthUserAddRequest.options
        # (field 3, UserAddOptions{no_password = 1}): append it by hand.
        call = self.ch.unary_unary(
            "/etcdserverpb.Auth/UserAdd",
            request_serializer=lambda r: r.SerializeToString() + b"\x1a\x02\x08\x01",
            response_deserializer=pb.AuthUserAddResponse.FromString)
        r = call(pb.AuthUserAddRequest(name=st.args["user"]), metadata=md,
                 timeout=self.timeout)
        return {"rev": self.rev(r.header)}

    def op_user_get(self, st, md):
        r = self.auth.UserGet(pb.AuthUserGetRequest(name=st.args["user"]), metadata=md,
                              timeout=self.timeout)
        return {"rev": self.rev(r.header), "roles": list(r.roles)}

    def op_user_list(self, st, md):
        r = self.auth.UserList(pb.AuthUserListRequest(), metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header), "users": list(r.users)}

    def op_user_delete(self, st, md):
        r = self.auth.UserDelete(pb.AuthUserDeleteRequest(name=st.args["user"]), metadata=md,
                                 timeout=self.timeout)
        return {"rev": self.rev(r.header)}

    def op_user_passwd(self, st, md):
        r = self.auth.UserChangePassword(
            pb.AuthUserChangePasswordRequest(name=st.args["user"], password=st.args["pw"]),
            metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header)}

    def op_user_grant(self, st, md):
        r = self.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user=st.args["user"],
                                                                role=st.args["role"]),
                                    metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header)}

    def op_user_revoke(self, st, md):
        r = self.auth.UserRevokeRole(pb.AuthUserRevokeRoleRequest(name=st.args["user"],
                                                                  role=st.args["role"]),
                                     metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header)}

    def op_role_add(self, st, md):
        r = self.auth.RoleAdd(pb.AuthRoleAddRequest(name=st.args["role"]), metadata=md,
                              timeout=self.timeout)
        return {"rev": self.rev(r.header)}

    def op_role_get(self, st, md):
        r = self.auth.RoleGet(pb.AuthRoleGetRequest(role=st.args["role"]), metadata=md,
                              timeout=self.timeout)
        return {"rev": self.rev(r.header),
                "perms": [(PERM_NAMES[p.permType], show(p.key), show(p.range_end))
                          for p in r.perm]}

    def op_role_list(self, st, md):
        r = self.auth.RoleList(pb.AuthRoleListRequest(), metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header), "roles": list(r.roles)}

    def op_role_delete(self, st, md):
        r = self.auth.RoleDelete(pb.AuthRoleDeleteRequest(role=st.args["role"]), metadata=md,
                                 timeout=self.timeout)
        return {"rev": self.rev(r.header)}

    def op_role_grant(self, st, md):
        a = st.args
        r = self.auth.RoleGrantPermission(
            pb.AuthRoleGrantPermissionRequest(
                name=a["role"], perm=auth_pb2.Permission(permType=a["ptype"], key=a["key"],
                                                         range_end=a["end"])),
            metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header)}

    def op_role_revoke(self, st, md):
        a = st.args
        r = self.auth.RoleRevokePermission(
            pb.AuthRoleRevokePermissionRequest(role=a["role"], key=a["key"],
                                               range_end=a["end"]),
            metadata=md, timeout=self.timeout)
        return {"rev": self.rev(r.header)}


def run(channel, steps, timeout=TIMEOUT):
    return Runner(channel, timeout).run(steps)


# ---------------------------------------------------------------- checking
def verdict_of(step, outcome):
    """What an outcome says about the auth decision: 'allow', 'deny',
    'no-user', 'bad-token' or 'other-auth-error'."""
    if step.op == "watch" and outcome[0] == "ok":
        c = outcome[1]["create"]
        if not isinstance(c, dict):
            return "other"
        if c["created"] and not c["canceled"]:
            return "allow"
        for v, err in VERDICT_ERRORS.items():
            if c["cancel_reason"].endswith(err[2]):
                return v
        return "other"
    if outcome[0] == "ok":
        return "allow"
    errors = MAINT_VERDICT_ERRORS if step.op in MAINT_ADMIN_OPS else VERDICT_ERRORS
    for v, err in errors.items():
        if outcome == err:
            return v
    return "other-auth-error" if outcome in AUTH_ERRORS else "allow"


def check_expectations(steps, outcomes):
    """The model's predictions against a (reference) run: a list of
    (step, expected, outcome) that disagree."""
    bad = []
    for st, out in zip(steps, outcomes):
        if st.expect is None:
            continue
        if isinstance(st.expect, tuple):
            if st.expect == OK:
                if out[0] != "ok":
                    bad.append((st, st.expect, out))
            elif out != st.expect:
                bad.append((st, st.expect, out))
        elif verdict_of(st, out) != st.expect:
            bad.append((st, st.expect, out))
    return bad


def categories(steps, outcomes):
    """Counts of outcome kinds, e.g. {'ok': 250, 'PERMISSION_DENIED: ...': 80};
    a watch counts as 'watch created' or as its cancel reason."""
    counts = {}
    for st, out in zip(steps, outcomes):
        if st.op == "watch" and out[0] == "ok" and isinstance(out[1]["create"], dict):
            c = out[1]["create"]
            k = "watch canceled: %s" % c["cancel_reason"] if c["canceled"] else "watch created"
        elif out[0] == "ok":
            k = "ok"
        else:
            k = "%s: %s" % (out[1], out[2])
        counts[k] = counts.get(k, 0) + 1
    return counts


def first_difference(steps, a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    if len(a) != len(b):
        return min(len(a), len(b))
    return None


def format_outcome(o):
    return pprint.pformat(o, width=100, compact=True)


def report_difference(steps, i, a, b, name_a, name_b, context=4):
    lines = []
    for j in range(max(0, i - context), i):
        lines.append("   #%d %s: %s -> %s" % (j, steps[j].actor, steps[j].desc,
                                              format_outcome(b[j]) if j < len(b) else "-"))
    st = steps[i]
    lines.append(">> #%d %s: %s" % (i, st.actor, st.desc))
    lines.append("   %s: %s" % (name_a, format_outcome(a[i]) if i < len(a) else "(none)"))
    lines.append("   %s: %s" % (name_b, format_outcome(b[i]) if i < len(b) else "(none)"))
    return "\n".join(lines)


if __name__ == "__main__":
    # Debugging aid: print one seed's steps, or run them against a server.
    #   rbac_scenario.py SEED [HOST:PORT]
    import sys
    steps = generate(int(sys.argv[1]))
    if len(sys.argv) < 3:
        for s in steps:
            print(s, "expect", s.expect)
        sys.exit(0)
    with grpc.insecure_channel(sys.argv[2]) as ch:
        outs = Runner(ch).run(steps, on_step=lambda s, o: print(s, "->", format_outcome(o)))
    for st, exp, out in check_expectations(steps, outs):
        print("MODEL MISMATCH", st, "expected", exp, "got", out)
    pprint.pprint(categories(steps, outs))
