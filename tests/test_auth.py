"""Auth with real clients: etcdctl's user/role/auth commands run against
cairn and a real etcd, with the same output expected from both; python-etcd3
with a user and password; users and roles surviving a restart; tokens and
permissions across a 3-member cluster; a client certificate's CN as the
user under --client-cert-auth. (The generated permission matrix is in
test_auth_rbac.py.)
"""

import json
import re
import subprocess

import pytest

import cluster
from tls_certs import CertAuthority, ClientFiles

ROOT = "root:rootpw"


def ctl(server, *args, user=None, tls=None):
    if tls is None:
        tls = server.tls_args()
    cmd = [cluster.ETCDCTL_BIN, "--endpoints", server.endpoint, "--dial-timeout", "5s",
           "--command-timeout", "10s"] + list(tls)
    if user:
        cmd += ["--user", user]
    p = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=60,
                       env=cluster.etcdctl_env())
    return p.returncode, p.stdout.strip(), normalize(p.stderr)


def normalize(err):
    """etcdctl's error lines, without the client's retry log noise."""
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("Error:")]
    return "\n".join(lines)


# The walk-through an operator does, as etcdctl prints it.
SCRIPT = [
    (None, ["user", "add", ROOT]),
    (None, ["auth", "enable"]),             # etcdctl adds the root role itself
    (None, ["get", "/app/x"]),              # no user any more
    ("root:wrong", ["get", "/app/x"]),
    (ROOT, ["put", "/app/x", "1"]),
    (ROOT, ["put", "/other", "2"]),
    (ROOT, ["role", "add", "reader"]),
    (ROOT, ["role", "add", "reader"]),
    (ROOT, ["role", "grant-permission", "reader", "read", "/app/", "--prefix"]),
    (ROOT, ["role", "grant-permission", "reader", "readwrite", "/app/own"]),
    (ROOT, ["role", "get", "reader"]),
    (ROOT, ["user", "add", "alice:pw"]),
    (ROOT, ["user", "add", "alice:pw"]),
    (ROOT, ["user", "grant-role", "alice", "reader"]),
    (ROOT, ["user", "grant-role", "alice", "nosuchrole"]),
    (ROOT, ["user", "get", "alice"]),
    (ROOT, ["user", "list"]),
    (ROOT, ["role", "list"]),
    ("alice:pw", ["get", "/app/x"]),
    ("alice:pw", ["get", "/app/", "--prefix"]),
    ("alice:pw", ["get", "/", "--prefix"]),
    ("alice:pw", ["get", "/other"]),
    ("alice:pw", ["put", "/app/x", "3"]),
    ("alice:pw", ["put", "/app/own", "mine"]),
    ("alice:pw", ["get", "/app/own"]),
    ("alice:pw", ["del", "/app/own"]),
    ("alice:pw", ["txn"], 'value("/app/x") = "1"\n\nput /app/y 1\n\n'),
    ("alice:pw", ["txn"], 'value("/app/x") = "1"\n\nget /app/x\n\n'),
    ("alice:pw", ["user", "list"]),
    ("alice:pw", ["user", "get", "alice"]),
    ("alice:pw", ["role", "get", "reader"]),
    ("alice:pw", ["auth", "disable"]),
    ("alice:pw", ["compaction", "1"]),
    (None, ["compaction", "1"]),
    (None, ["member", "list"]),
    (None, ["lease", "grant", "60"]),
    (None, ["lease", "revoke", "1234"]),
    ("alice:pw", ["defrag"]),
    ("alice:pw", ["endpoint", "hashkv"]),
    ("alice:pw", ["member", "add", "m2", "--peer-urls=http://127.0.0.1:1"]),
    ("alice:pw", ["member", "remove", "1234"]),
    (ROOT, ["role", "revoke-permission", "reader", "/app/own"]),
    (ROOT, ["role", "revoke-permission", "reader", "/app/own"]),
    ("alice:pw", ["put", "/app/own", "again"]),
    (ROOT, ["user", "revoke-role", "alice", "reader"]),
    (ROOT, ["user", "revoke-role", "alice", "reader"]),
    ("alice:pw", ["get", "/app/x"]),
    (ROOT, ["user", "passwd", "alice", "--interactive=false"], "newpw\n"),
    ("alice:pw", ["get", "/app/x"]),
    (ROOT, ["user", "delete", "root"]),
    (ROOT, ["user", "revoke-role", "root", "root"]),
    (ROOT, ["role", "delete", "root"]),
    (ROOT, ["role", "delete", "reader"]),
    (ROOT, ["user", "delete", "alice"]),
    (ROOT, ["user", "delete", "alice"]),
    (ROOT, ["auth", "disable"]),
    (None, ["get", "/app/x"]),
    (None, ["user", "list"]),
]

# Where etcd 3.5.28+ (the checks of etcd commit f936af2c, "guard
# unauthenticated endpoints with auth checks", and cdbfd651) answers
# otherwise than the etcd 3.4 this machine runs: cairn follows 3.5, so these
# steps expect 3.5's answer, and etcd 3.4 is only checked to succeed there.
DIFFERS_FROM_3_4 = {
    ("alice:pw", "compaction 1"): (1, "", "Error: etcdserver: permission denied"),
    (None, "compaction 1"): (1, "", "Error: etcdserver: user name is empty"),
    (None, "member list"): (1, "", "Error: etcdserver: user name is empty"),
    (None, "lease grant 60"): (1, "", "Error: failed to grant lease (etcdserver: user name is empty)"),
    (None, "lease revoke 1234"): (1, "", "Error: failed to revoke lease (etcdserver: user name is empty)"),
}


def run_script(server):
    out = []
    for step in SCRIPT:
        user, args = step[0], step[1]
        stdin = step[2] if len(step) > 2 else None
        if stdin is not None:
            cmd = [cluster.ETCDCTL_BIN, "--endpoints", server.endpoint, "--dial-timeout", "5s",
                   "--command-timeout", "10s"] + (["--user", user] if user else []) + args
            p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60,
                               env=cluster.etcdctl_env())
            got = (p.returncode, p.stdout.strip(), normalize(p.stderr))
        else:
            got = ctl(server, *args, user=user)
        out.append((user, " ".join(args), got))
    return out


def test_etcdctl_walk_through_matches_etcd(server_factory):
    """Every step's exit code, output and error as the real etcd gives them."""
    mine = run_script(server_factory(kind="cairn"))
    theirs = run_script(server_factory(kind="etcd"))
    for m, t in zip(mine, theirs):
        want = DIFFERS_FROM_3_4.get((m[0], m[1]))
        if want is not None:
            assert m[2] == want, "step %s %s: cairn %r, etcd 3.5 gives %r" % (m[0], m[1], m[2], want)
            assert "user name is empty" not in t[2][2] and "permission denied" not in t[2][2], t
            continue
        assert m == t, "step %s %s:\n cairn: %r\n etcd:  %r" % (m[0], m[1], m[2], t[2])
    # Not vacuous: refusals and successes both happened.
    errors = [m for m in mine if m[2][0] != 0]
    assert any("permission denied" in m[2][2] for m in errors)
    assert any("user name is empty" in m[2][2] for m in errors)
    assert len(errors) < len(mine) - 10


def test_python_client_with_user_and_restart(server_factory, tmp_path):
    # python-etcd3 sends the token as call credentials, which gRPC only
    # sends over TLS: an https client URL.
    ca = CertAuthority(tmp_path / "ca")
    server = ca.issue("server", server=True)
    s = server_factory(extra_args=["--cert-file", server.cert, "--key-file", server.key],
                       client_tls=ClientFiles(ca.cert))
    for args in (["user", "add", ROOT], ["auth", "enable"]):
        assert ctl(s, *args)[0] == 0
    for args in (["role", "add", "app"], ["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"],
                 ["user", "add", "svc:svcpw"], ["user", "grant-role", "svc", "app"]):
        assert ctl(s, *args, user=ROOT)[0] == 0, args
    import etcd3
    c = etcd3.client(host="127.0.0.1", port=s.client_port, user="svc", password="svcpw", timeout=10,
                     ca_cert=ca.cert)
    try:
        c.put("/app/limit", "10")
        assert c.get("/app/limit")[0] == b"10"
        with pytest.raises(Exception) as e:
            c.put("/secret", "x")
        assert "permission denied" in str(e.value)
    finally:
        c.close()
    s.restart()
    # Users, roles and the auth switch are in the data; tokens are not.
    assert ctl(s, "get", "/app/limit", "--print-value-only", user="svc:svcpw")[1] == "10"
    assert ctl(s, "get", "/app/limit")[2] == "Error: etcdserver: user name is empty"
    assert ctl(s, "user", "list", user=ROOT)[1].split() == ["root", "svc"]
    assert ctl(s, "role", "get", "app", user=ROOT)[1].splitlines()[-1].strip() == "[/app/, /app0) (prefix /app/)"


def test_auth_is_replicated_and_tokens_work_on_every_member(tmp_path):
    from cluster_harness import Cluster
    c = Cluster(cluster.TARGET, tmp_path / "c", size=3)
    try:
        c.start()
        a, b = c.members[0], c.members[1]
        for args in (["user", "add", ROOT], ["auth", "enable"]):
            assert ctl(a, *args)[0] == 0, args
        for args in (["role", "add", "app"], ["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"],
                     ["user", "add", "svc:svcpw"], ["user", "grant-role", "svc", "app"]):
            assert ctl(a, *args, user=ROOT)[0] == 0, args
        # Log in on one member, use the token on another.
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        with cluster.make_channel(a.host_port) as ch:
            token = rpc_pb2_grpc.AuthStub(ch).Authenticate(
                rpc_pb2.AuthenticateRequest(name="svc", password="svcpw"), timeout=10).token
        assert re.match(r"^[A-Za-z]{16}\.\d+$", token), token
        md = [("token", token)]
        import time
        deadline = time.monotonic() + 10
        while True:  # the other member applies the login a moment later
            try:
                with cluster.make_channel(b.host_port) as ch:
                    rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"/app/k", value=b"v"),
                                                metadata=md, timeout=10)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAUTHENTICATED or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with cluster.make_channel(c.members[2].host_port) as ch:
            with pytest.raises(grpc.RpcError) as e:
                rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"/nope", value=b"v"), metadata=md, timeout=10)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert e.value.details() == "etcdserver: permission denied"
        assert ctl(c.members[2], "get", "/app/k", "--print-value-only", user="svc:svcpw")[1] == "v"
    finally:
        c.stop()


@pytest.mark.parametrize("kind", ["cairn", "etcd"])
def test_client_certificate_common_name_is_the_user(server_factory, tmp_path, kind):
    ca = CertAuthority(tmp_path / "ca")
    server = ca.issue("server", server=True)
    root = ca.issue("root")
    alice = ca.issue("alice")
    s = server_factory(kind=kind, extra_args=["--cert-file", server.cert, "--key-file", server.key,
                                              "--trusted-ca-file", ca.cert, "--client-cert-auth"],
                       client_tls=ClientFiles(ca.cert, root.cert, root.key))
    as_root = ["--cacert", ca.cert, "--cert", root.cert, "--key", root.key]
    as_alice = ["--cacert", ca.cert, "--cert", alice.cert, "--key", alice.key]
    for args in (["user", "add", "root", "--no-password"], ["role", "add", "root"],
                 ["user", "grant-role", "root", "root"], ["auth", "enable"],
                 ["role", "add", "app"], ["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"],
                 ["user", "add", "alice", "--no-password"], ["user", "grant-role", "alice", "app"]):
        code, out, err = ctl(s, *args, tls=as_root)
        assert code == 0, (args, out, err)
    assert ctl(s, "put", "/app/x", "1", tls=as_alice)[:2] == (0, "OK")
    assert ctl(s, "put", "/other", "1", tls=as_alice)[2] == "Error: etcdserver: permission denied"
    assert ctl(s, "put", "/other", "1", tls=as_root)[:2] == (0, "OK")


def metric(server, name):
    p = subprocess.run(["curl", "-s", "--max-time", "10", "http://%s/metrics" % server.host_port],
                       capture_output=True, text=True, timeout=30)
    m = re.search(r"^%s (\S+)$" % re.escape(name), p.stdout, re.M)
    return float(m.group(1)) if m else None


def test_failed_logins_are_counted_throttled_and_auth_changes_logged(server_factory):
    """Beyond etcd: a user name that keeps failing waits longer and longer
    (refused unchecked meanwhile), and every auth change is logged with who
    made it."""
    import grpc
    import time
    from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
    s = server_factory(extra_args=["--log-level", "info"])
    for args in (["user", "add", ROOT], ["auth", "enable"]):
        assert ctl(s, *args)[0] == 0
    assert ctl(s, "role", "add", "ops", user=ROOT)[0] == 0
    auth = rpc_pb2_grpc.AuthStub(s.channel())

    def login(password):
        try:
            auth.Authenticate(rpc_pb2.AuthenticateRequest(name="root", password=password), timeout=10)
            return "ok"
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert e.details() == "etcdserver: authentication failed, invalid user ID or password"
            return "refused"

    attempts = 0
    while metric(s, "cairn_auth_logins_throttled_total") == 0 and attempts < 20:
        assert login("guess%d" % attempts) == "refused"
        attempts += 1
    throttled = metric(s, "cairn_auth_logins_throttled_total")
    failed = metric(s, "cairn_auth_failed_logins_total")
    assert throttled >= 1 and failed >= 3 and failed + throttled == attempts
    # The right password gets through once the wait (at most 10 s) is over.
    deadline = time.monotonic() + 15
    while login("rootpw") != "ok":
        assert time.monotonic() < deadline, "still throttled after 15 s"
        time.sleep(0.5)
    log = s.log_tail(200000)
    assert "auth: added user root (by a client while auth was off" in log
    assert "auth: enabled auth (by a client while auth was off" in log
    assert "auth: added role ops (by user root" in log
    assert 'invalid authentication was requested (user \\"root\\"' in log


def _jwt_claims(token):
    import base64
    import json
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _forge(token, header):
    """The token with another header and no valid signature."""
    import base64
    import json
    head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return head + "." + token.split(".")[1] + "."


def _openssl_pss(key_or_pub, data, tmp_path, signature=None):
    """RSA-PSS over SHA-256 with the openssl CLI (salt = digest length, as Go signs): signs data with the
    private key, or verifies signature with the public key and answers whether it holds."""
    msg, sig = tmp_path / "pss.msg", tmp_path / "pss.sig"
    msg.write_bytes(data)
    opts = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]
    if signature is None:
        subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_or_pub] + opts + ["-out", str(sig), str(msg)],
                       check=True, capture_output=True, timeout=60)
        return sig.read_bytes()
    sig.write_bytes(signature)
    return subprocess.run(["openssl", "dgst", "-sha256", "-verify", key_or_pub] + opts +
                          ["-signature", str(sig), str(msg)], capture_output=True, timeout=60).returncode == 0


def _b64url(data):
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text):
    import base64
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("kind,method", [("cairn", "RS256"), ("etcd", "RS256"), ("cairn", "ES256"),
                                         ("cairn", "PS256"), ("etcd", "PS256")])
def test_jwt_tokens(server_factory, tmp_path, kind, method):
    import grpc
    from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
    key, pub = str(tmp_path / "jwt.key"), str(tmp_path / "jwt.pub")
    if method[:2] in ("RS", "PS"):
        subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True, timeout=60)
    else:
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                       check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True,
                   timeout=60)
    s = server_factory(kind=kind, extra_args=[
        "--auth-token", "jwt,pub-key=%s,priv-key=%s,sign-method=%s,ttl=10m" % (pub, key, method)])
    for args in (["user", "add", ROOT], ["auth", "enable"]):
        assert ctl(s, *args)[0] == 0, args
    ch = s.channel()
    token = rpc_pb2_grpc.AuthStub(ch).Authenticate(
        rpc_pb2.AuthenticateRequest(name="root", password="rootpw"), timeout=10).token
    claims = _jwt_claims(token)
    assert claims["username"] == "root" and claims["revision"] >= 1 and claims["exp"] > 0
    kv = rpc_pb2_grpc.KVStub(ch)
    kv.Put(rpc_pb2.PutRequest(key=b"/j", value=b"1"), metadata=[("token", token)], timeout=10)
    if method == "PS256":
        # The server's PSS signature verifies with openssl, and a token openssl signs is accepted.
        head, body, sig = token.split(".")
        assert json.loads(_unb64url(head)) == {"alg": "PS256", "typ": "JWT"}
        assert _openssl_pss(pub, (head + "." + body).encode(), tmp_path, _unb64url(sig))
        assert not _openssl_pss(pub, (head + "." + body + "x").encode(), tmp_path, _unb64url(sig))
        mine = head + "." + body
        mine += "." + _b64url(_openssl_pss(key, mine.encode(), tmp_path))
        kv.Put(rpc_pb2.PutRequest(key=b"/j", value=b"1"), metadata=[("token", mine)], timeout=10)

    def refused(tok):
        with pytest.raises(grpc.RpcError) as e:
            kv.Put(rpc_pb2.PutRequest(key=b"/j", value=b"2"), metadata=[("token", tok)], timeout=10)
        return e.value.code(), e.value.details()
    assert refused(_forge(token, {"alg": "none", "typ": "JWT"})) == \
        (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
    assert refused(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))[1] == \
        "etcdserver: invalid auth token"
    # An auth change makes every token older than the store: sign in again.
    assert ctl(s, "role", "add", "x", user=ROOT)[0] == 0
    assert refused(token) == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: revision of auth store is old")
    assert ctl(s, "get", "/j", "--print-value-only", user=ROOT)[1] == "1"


def test_jwt_options_are_checked_at_start(server_factory, tmp_path):
    s = server_factory(extra_args=["--auth-token", "jwt,sign-method=XS256,priv-key=/nonexistent"], start=False)
    p = subprocess.run(s.command(), capture_output=True, text=True, timeout=30, cwd=s.base_dir)
    assert p.returncode != 0 and "auth: invalid auth signature method" in p.stderr, p.stderr


def test_lease_calls_check_the_keys_of_the_lease(server_factory):
    """etcd 3.5's lease checks: TimeToLive --keys and LeaseLeases need READ,
    keep-alive needs WRITE, on every key of the lease (unless root)."""
    s = server_factory()
    for args, user in ((["user", "add", ROOT], None), (["auth", "enable"], None),
                       (["role", "add", "app"], ROOT),
                       (["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"], ROOT),
                       (["user", "add", "svc:svcpw"], ROOT), (["user", "grant-role", "svc", "app"], ROOT)):
        assert ctl(s, *args, user=user)[0] == 0, args
    code, out, _ = ctl(s, "lease", "grant", "600", user=ROOT)
    secret_lease = re.search(r"lease ([0-9a-f]+) granted", out).group(1)
    assert ctl(s, "put", "/secret", "x", "--lease", secret_lease, user=ROOT)[0] == 0
    code, out, _ = ctl(s, "lease", "grant", "600", user="svc:svcpw")
    own = re.search(r"lease ([0-9a-f]+) granted", out).group(1)
    assert ctl(s, "put", "/app/k", "v", "--lease", own, user="svc:svcpw")[0] == 0

    assert ctl(s, "lease", "timetolive", own, "--keys", user="svc:svcpw")[0] == 0
    assert ctl(s, "lease", "timetolive", secret_lease, user="svc:svcpw")[0] == 0
    assert "permission denied" in ctl(s, "lease", "timetolive", secret_lease, "--keys", user="svc:svcpw")[2]
    assert ctl(s, "lease", "keep-alive", "--once", own, user="svc:svcpw")[0] == 0
    assert "permission denied" in ctl(s, "lease", "keep-alive", "--once", secret_lease, user="svc:svcpw")[2]
    assert "permission denied" in ctl(s, "lease", "list", user="svc:svcpw")[2]
    code, out, _ = ctl(s, "lease", "list", user=ROOT)
    assert code == 0 and secret_lease in out and own in out
    assert "permission denied" in ctl(s, "lease", "revoke", secret_lease, user="svc:svcpw")[2]
    assert "user name is empty" in ctl(s, "lease", "timetolive", own)[2]


def test_gateway_with_a_token(server_factory):
    """The JSON gateway: /v3/auth/authenticate, then the token in the
    Authorization header, as etcd's gateway takes it (docs/gateway.md)."""
    import base64
    import json
    s = server_factory()
    for args, user in ((["user", "add", ROOT], None), (["auth", "enable"], None),
                       (["put", "/g", "v"], ROOT)):
        assert ctl(s, *args, user=user)[0] == 0, args

    def post(path, body, token=None):
        cmd = ["curl", "-s", "--max-time", "10", "http://%s%s" % (s.host_port, path), "-d", json.dumps(body)]
        if token:
            cmd += ["-H", "Authorization: " + token]
        return json.loads(subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout)
    token = post("/v3/auth/authenticate", {"name": "root", "password": "rootpw"})["token"]
    key = base64.b64encode(b"/g").decode()
    got = post("/v3/kv/range", {"key": key}, token)
    assert base64.b64decode(got["kvs"][0]["value"]) == b"v"
    assert post("/v3/kv/range", {"key": key})["message"] == "etcdserver: user name is empty"
    assert post("/v3/kv/range", {"key": key}, "bogus")["message"] == "etcdserver: invalid auth token"


@pytest.mark.parametrize("kind", ["cairn", "etcd"])
def test_lock_and_election_act_as_the_caller(server_factory, kind):
    """etcdctl lock / elect with a user: allowed under its prefix, refused
    elsewhere, as with etcd (whose lock and election servers call the KV API
    with the caller's token)."""
    s = server_factory(kind=kind)
    for args, user in ((["user", "add", ROOT], None), (["auth", "enable"], None),
                       (["role", "add", "locker"], ROOT),
                       (["role", "grant-permission", "locker", "readwrite", "/locks/", "--prefix"], ROOT),
                       (["role", "grant-permission", "locker", "readwrite", "/elect/", "--prefix"], ROOT),
                       (["user", "add", "svc:svcpw"], ROOT), (["user", "grant-role", "svc", "locker"], ROOT)):
        assert ctl(s, *args, user=user)[0] == 0, args
    code, out, err = ctl(s, "lock", "/locks/app", "echo", "held", user="svc:svcpw")
    assert (code, out) == (0, "held"), err
    code, out, err = ctl(s, "lock", "/other/app", "echo", "held", user="svc:svcpw")
    assert code != 0 and "permission denied" in err, (out, err)
    code, out, err = ctl(s, "lock", "/locks/app", "echo", "held")
    assert code != 0 and "user name is empty" in err, (out, err)
    # A leader is proclaimed and read back, as the caller.
    p = subprocess.Popen([cluster.ETCDCTL_BIN, "--endpoints", s.endpoint, "--user", "svc:svcpw",
                          "elect", "/elect/app", "candidate-1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=cluster.etcdctl_env())
    try:
        import time
        deadline = time.monotonic() + 15
        while True:
            code, out, err = ctl(s, "get", "/elect/app/", "--prefix", "--print-value-only", user="svc:svcpw")
            if code == 0 and out == "candidate-1":
                break
            assert time.monotonic() < deadline, (code, out, err)
            time.sleep(0.2)
    finally:
        p.kill()
        p.communicate(timeout=10)
