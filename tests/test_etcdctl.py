"""The real etcdctl (v3 API, 3.4.23 from Debian) against the server under test.

Output is checked exactly as a user sees it.  Revisions are exact: every test
starts from a fresh server whose revision is 1, like etcd.

etcdctl 3.4 notes (not cairn differences):
  * `get --count-only` does not exist before etcdctl 3.5 (count_only is
    covered over raw gRPC in test_differential / test_python_client).
  * `endpoint health` prints its result line on stderr in 3.4 (stdout in 3.5).
  * errors are printed on stderr as "Error: <grpc message>", preceded by a
    client-side retry warning line in JSON.
"""

import base64
import json
import os
import queue
import re
import threading
import time

import pytest

import cluster


def ok(srv, *args, input=None):
    p = srv.etcdctl(*args, input=input)
    assert p.returncode == 0, "etcdctl %s failed (%d):\nstdout: %s\nstderr: %s" % (
        " ".join(map(str, args)), p.returncode, p.stdout, p.stderr)
    return p.stdout


def err(srv, *args, input=None):
    """Run a command that must fail; return its final "Error: ..." line."""
    p = srv.etcdctl(*args, input=input)
    assert p.returncode != 0, "etcdctl %s unexpectedly succeeded:\n%s" % (args, p.stdout)
    lines = [l for l in p.stderr.splitlines() if l.startswith("Error:")]
    assert lines, "no Error: line in stderr:\n%s" % p.stderr
    return lines[-1]


def js(srv, *args):
    return json.loads(ok(srv, *args, "-w", "json"))


def b64(s):
    return base64.b64encode(s.encode()).decode()


def rev(srv):
    return js(srv, "get", "x-no-such-key")["header"]["revision"]


# --------------------------------------------------------------------- put/get
def test_put_get_plain(cairn):
    assert ok(cairn, "put", "foo", "bar") == "OK\n"
    assert ok(cairn, "get", "foo") == "foo\nbar\n"
    assert ok(cairn, "get", "missing") == ""
    assert ok(cairn, "put", "foo", "baz", "--prev-kv") == "OK\nfoo\nbar\n"
    assert ok(cairn, "get", "foo", "--print-value-only") == "baz\n"
    # values with spaces and an empty value
    assert ok(cairn, "put", "sp", "hello world") == "OK\n"
    assert ok(cairn, "get", "sp") == "sp\nhello world\n"
    assert ok(cairn, "put", "empty", "") == "OK\n"
    assert ok(cairn, "get", "empty") == "empty\n\n"


def _fill_cfg(srv):
    # revisions: /cfg/b=2, /cfg/a=3, /cfg/c=4, /cfg/a=5, other=6
    for k in ["/cfg/b", "/cfg/a", "/cfg/c", "/cfg/a"]:
        assert ok(srv, "put", k, "val-" + k) == "OK\n"
    ok(srv, "put", "other", "x")


def test_get_prefix_sort_limit(cairn):
    _fill_cfg(cairn)
    all3 = "/cfg/a\nval-/cfg/a\n/cfg/b\nval-/cfg/b\n/cfg/c\nval-/cfg/c\n"
    assert ok(cairn, "get", "--prefix", "/cfg/") == all3
    assert ok(cairn, "get", "--prefix", "/cfg/", "--sort-by=KEY", "--order=DESCEND") == \
        "/cfg/c\nval-/cfg/c\n/cfg/b\nval-/cfg/b\n/cfg/a\nval-/cfg/a\n"
    assert ok(cairn, "get", "--prefix", "/cfg/", "--sort-by=MODIFY") == \
        "/cfg/b\nval-/cfg/b\n/cfg/c\nval-/cfg/c\n/cfg/a\nval-/cfg/a\n"
    assert ok(cairn, "get", "--prefix", "/cfg/", "--sort-by=CREATE", "--order=DESCEND") == \
        "/cfg/c\nval-/cfg/c\n/cfg/a\nval-/cfg/a\n/cfg/b\nval-/cfg/b\n"
    # version: /cfg/a has 2, others 1; ties come out in key order
    assert ok(cairn, "get", "--prefix", "/cfg/", "--sort-by=VERSION", "--order=DESCEND") == \
        "/cfg/a\nval-/cfg/a\n/cfg/b\nval-/cfg/b\n/cfg/c\nval-/cfg/c\n"
    assert ok(cairn, "get", "--prefix", "/cfg/", "--limit", "2") == \
        "/cfg/a\nval-/cfg/a\n/cfg/b\nval-/cfg/b\n"
    assert ok(cairn, "get", "--prefix", "/cfg/", "--keys-only") == "/cfg/a\n\n/cfg/b\n\n/cfg/c\n\n"
    assert ok(cairn, "get", "--prefix", "/cfg/", "--print-value-only") == \
        "val-/cfg/a\nval-/cfg/b\nval-/cfg/c\n"
    assert ok(cairn, "get", "--from-key", "/cfg/b") == \
        "/cfg/b\nval-/cfg/b\n/cfg/c\nval-/cfg/c\nother\nx\n"
    assert ok(cairn, "get", "/cfg/a", "/cfg/c") == "/cfg/a\nval-/cfg/a\n/cfg/b\nval-/cfg/b\n"


def test_get_json_fields(cairn):
    _fill_cfg(cairn)
    j = js(cairn, "get", "--prefix", "/cfg/", "--limit", "2")
    assert j["header"]["revision"] == 6
    for f in ("cluster_id", "member_id", "raft_term"):
        assert f in j["header"], f
    assert j["count"] == 3
    assert j["more"] is True
    assert j["kvs"] == [
        {"key": b64("/cfg/a"), "create_revision": 3, "mod_revision": 5, "version": 2,
         "value": b64("val-/cfg/a")},
        {"key": b64("/cfg/b"), "create_revision": 2, "mod_revision": 2, "version": 1,
         "value": b64("val-/cfg/b")},
    ]
    j = js(cairn, "get", "/cfg/a")
    assert "more" not in j and j["count"] == 1
    j = js(cairn, "put", "/cfg/d", "v")
    assert j["header"]["revision"] == 7 and "prev_kv" not in j


def test_get_historical_rev(cairn):
    assert ok(cairn, "put", "h", "v1") == "OK\n"      # rev 2
    assert ok(cairn, "put", "h", "v2") == "OK\n"      # rev 3
    assert ok(cairn, "del", "h") == "1\n"             # rev 4
    assert ok(cairn, "get", "h", "--rev=2") == "h\nv1\n"
    assert ok(cairn, "get", "h", "--rev=3") == "h\nv2\n"
    assert ok(cairn, "get", "h", "--rev=4") == ""
    assert ok(cairn, "get", "h", "--rev=1") == ""
    j = js(cairn, "get", "h", "--rev=3")
    assert j["header"]["revision"] == 4      # header is always the current revision
    assert j["kvs"][0]["mod_revision"] == 3 and j["kvs"][0]["version"] == 2
    assert err(cairn, "get", "h", "--rev=100") == \
        "Error: etcdserver: mvcc: required revision is a future revision"


# ----------------------------------------------------------------------- del
def test_del(cairn):
    _fill_cfg(cairn)
    assert ok(cairn, "del", "nope") == "0\n"
    assert ok(cairn, "del", "other") == "1\n"
    assert ok(cairn, "del", "/cfg/a", "--prev-kv") == "1\n/cfg/a\nval-/cfg/a\n"
    assert ok(cairn, "del", "--prefix", "/cfg/", "--prev-kv") == \
        "2\n/cfg/b\nval-/cfg/b\n/cfg/c\nval-/cfg/c\n"
    assert ok(cairn, "get", "--from-key", "") == ""
    ok(cairn, "put", "r1", "1")
    ok(cairn, "put", "r2", "2")
    ok(cairn, "put", "r3", "3")
    assert ok(cairn, "del", "r1", "r3") == "2\n"
    assert ok(cairn, "get", "--prefix", "r") == "r3\n3\n"
    j = js(cairn, "del", "r3", "--prev-kv")
    assert j["deleted"] == 1 and j["prev_kvs"][0]["key"] == b64("r3")


# ----------------------------------------------------------------------- txn
def test_txn_interactive(cairn):
    ok(cairn, "put", "k1", "v1")        # rev 2
    ok(cairn, "put", "k2", "v2")        # rev 3
    out = ok(cairn, "txn", input='value("k1") = "v1"\nversion("k2") > "0"\n\n'
                                  'put k3 ok\nget k1\n\nput k3 fail\n\n')
    assert out == "SUCCESS\n\nOK\n\nk1\nv1\n"
    assert ok(cairn, "get", "k3") == "k3\nok\n"          # rev 4
    out = ok(cairn, "txn", input='value("k1") = "zz"\n\nput k3 ok2\n\nput k3 fail\ndel k2\n\n')
    assert out == "FAILURE\n\nOK\n\n1\n"                 # rev 5
    assert ok(cairn, "get", "k3") == "k3\nfail\n"
    assert ok(cairn, "get", "k2") == ""
    # create/mod revision compares; empty branches print just the verdict
    assert ok(cairn, "txn", input='create("k1") = "0"\n\nput k4 x\n\n\n') == "FAILURE\n"
    assert ok(cairn, "txn", input='create("nokey") = "0"\n\n\n\n') == "SUCCESS\n"
    assert ok(cairn, "txn", input='mod("k3") = "5"\ncreate("k3") = "4"\n\nget k3\n\n\n') == \
        "SUCCESS\n\nk3\nfail\n"
    assert ok(cairn, "txn", input='mod("k3") < "5"\n\n\nget k1\n\n') == "FAILURE\n\nk1\nv1\n"
    assert ok(cairn, "txn", input='version("k3") != "2"\n\nput k5 y\n\n\n') == "FAILURE\n"
    assert ok(cairn, "txn", input='version("k3") = "2"\n\nput k5 y\n\n\n') == "SUCCESS\n\nOK\n"
    # -w json of a txn with nested put/range
    j = json.loads(ok(cairn, "txn", "-w", "json",
                      input='value("k1") = "v1"\n\nput k6 z\nget k6\n\n\n'))
    assert j["succeeded"] is True
    assert j["header"]["revision"] == 7
    assert "ResponsePut" in j["responses"][0]["Response"]
    rr = j["responses"][1]["Response"]["ResponseRange"]
    assert rr["count"] == 1 and rr["kvs"][0]["value"] == b64("z")


# --------------------------------------------------------------------- watch
class Lines:
    """Collects a subprocess' stdout lines in a thread."""

    def __init__(self, proc):
        self.proc = proc
        self.q = queue.Queue()
        self.lines = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        for line in iter(self.proc.stdout.readline, b""):
            self.q.put(line.decode("utf-8", "replace").rstrip("\n"))
        self.q.put(None)

    def take(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while len(self.lines) < n:
            left = deadline - time.monotonic()
            try:
                line = self.q.get(timeout=max(0.01, left))
            except queue.Empty:
                line = None
            if line is None:
                err = b""
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read()
                raise AssertionError("expected %d lines, got %d: %r (stderr %r)"
                                     % (n, len(self.lines), self.lines, err))
            self.lines.append(line)
        return self.lines[:n]


def test_watch_prefix_live(cairn):
    ok(cairn, "put", "/cfg/x", "before")
    start = rev(cairn) + 1
    # --rev makes the watch independent of when it gets established.
    p = cairn.etcdctl_popen("watch", "--prefix", "/cfg/", "--rev=%d" % start)
    pk = cairn.etcdctl_popen("watch", "--prefix", "/cfg/", "--rev=%d" % start, "--prev-kv")
    try:
        w, wk = Lines(p), Lines(pk)
        ok(cairn, "put", "/cfg/a", "1")
        ok(cairn, "put", "/other", "ignored")
        ok(cairn, "put", "/cfg/a", "2")
        ok(cairn, "put", "/cfg/b", "hello world")
        ok(cairn, "del", "/cfg/a")
        ok(cairn, "del", "--prefix", "/cfg/")
        assert w.take(18) == [
            "PUT", "/cfg/a", "1",
            "PUT", "/cfg/a", "2",
            "PUT", "/cfg/b", "hello world",
            "DELETE", "/cfg/a", "",
            "DELETE", "/cfg/b", "",
            "DELETE", "/cfg/x", "",
        ]
        # --prev-kv prints the previous key/value before the new one.
        assert wk.take(26) == [
            "PUT", "/cfg/a", "1",
            "PUT", "/cfg/a", "1", "/cfg/a", "2",
            "PUT", "/cfg/b", "hello world",
            "DELETE", "/cfg/a", "2", "/cfg/a", "",
            "DELETE", "/cfg/b", "hello world", "/cfg/b", "",
            "DELETE", "/cfg/x", "before", "/cfg/x", "",
        ]
    finally:
        cluster.stop_child(p)
        cluster.stop_child(pk)


def test_watch_replay_rev(cairn):
    ok(cairn, "put", "/cfg/a", "1")     # 2
    ok(cairn, "put", "/cfg/b", "2")     # 3
    ok(cairn, "put", "/cfg/a", "3")     # 4
    ok(cairn, "del", "/cfg/b")          # 5
    p = cairn.etcdctl_popen("watch", "--prefix", "/cfg/", "--rev=3")
    try:
        assert Lines(p).take(9) == ["PUT", "/cfg/b", "2", "PUT", "/cfg/a", "3",
                                    "DELETE", "/cfg/b", ""]
    finally:
        cluster.stop_child(p)
    p = cairn.etcdctl_popen("watch", "/cfg/a", "--rev=1", "-w", "json")
    try:
        line = Lines(p).take(1)[0]
        j = json.loads(line)
        evs = j["Events"]
        assert [e["kv"]["mod_revision"] for e in evs] == [2, 4]
        assert evs[1]["kv"] == {"key": b64("/cfg/a"), "create_revision": 2, "mod_revision": 4,
                                "version": 2, "value": b64("3")}
    finally:
        cluster.stop_child(p)


# --------------------------------------------------------------------- lease
LEASE_RE = re.compile(r"^lease ([0-9a-f]{16}) granted with TTL\((\d+)s\)$")


def test_lease_lifecycle(cairn):
    out = ok(cairn, "lease", "grant", "600").strip()
    m = LEASE_RE.match(out)
    assert m, out
    lid = m.group(1)
    assert m.group(2) == "600"
    out2 = ok(cairn, "lease", "grant", "300").strip()
    lid2 = LEASE_RE.match(out2).group(1)
    assert lid2 != lid

    assert ok(cairn, "put", "--lease=" + lid, "/l/a", "1") == "OK\n"
    assert ok(cairn, "put", "--lease=" + lid, "/l/b", "2") == "OK\n"
    assert ok(cairn, "put", "/l/c", "3") == "OK\n"
    j = js(cairn, "get", "/l/a")
    assert j["kvs"][0]["lease"] == int(lid, 16)

    out = ok(cairn, "lease", "timetolive", lid).strip()
    m = re.match(r"^lease %s granted with TTL\(600s\), remaining\((\d+)s\)$" % lid, out)
    assert m, out
    assert 500 <= int(m.group(1)) <= 600
    out = ok(cairn, "lease", "timetolive", "--keys", lid).strip()
    m = re.match(r"^lease %s granted with TTL\(600s\), remaining\((\d+)s\), "
                 r"attached keys\(\[(.*)\]\)$" % lid, out)
    assert m, out
    assert sorted(m.group(2).split(" ")) == ["/l/a", "/l/b"]
    j = js(cairn, "lease", "timetolive", "--keys", lid)
    assert j["id"] == int(lid, 16) and j["granted-ttl"] == 600 and 500 <= j["ttl"] <= 600
    assert sorted(base64.b64decode(k).decode() for k in j["keys"]) == ["/l/a", "/l/b"]

    assert ok(cairn, "lease", "keep-alive", "--once", lid) == \
        "lease %s keepalived with TTL(600)\n" % lid

    out = ok(cairn, "lease", "list").splitlines()
    assert out[0] == "found 2 leases"
    assert sorted(out[1:]) == sorted([lid, lid2])

    assert ok(cairn, "lease", "revoke", lid) == "lease %s revoked\n" % lid
    assert ok(cairn, "get", "--prefix", "/l/") == "/l/c\n3\n"
    assert ok(cairn, "lease", "timetolive", lid) == "lease %s already expired\n" % lid
    assert err(cairn, "lease", "revoke", lid) == \
        "Error: failed to revoke lease (etcdserver: requested lease not found)"
    assert err(cairn, "lease", "keep-alive", "--once", lid) == \
        "Error: etcdserver: requested lease not found"
    assert err(cairn, "put", "--lease=" + lid, "/l/d", "x") == \
        "Error: etcdserver: requested lease not found"
    out = ok(cairn, "lease", "list").splitlines()
    assert out == ["found 1 leases", lid2]


# ---------------------------------------------------------------- compaction
def test_compaction(cairn):
    for i in range(5):
        ok(cairn, "put", "c", "v%d" % i)      # revs 2..6
    assert ok(cairn, "get", "c", "--rev=3") == "c\nv1\n"
    assert ok(cairn, "compact", "4") == "compacted revision 4\n"
    assert err(cairn, "get", "c", "--rev=3") == \
        "Error: etcdserver: mvcc: required revision has been compacted"
    assert ok(cairn, "get", "c", "--rev=4") == "c\nv2\n"
    assert ok(cairn, "get", "c") == "c\nv4\n"
    assert err(cairn, "compact", "4") == \
        "Error: etcdserver: mvcc: required revision has been compacted"
    assert err(cairn, "compact", "100") == \
        "Error: etcdserver: mvcc: required revision is a future revision"
    assert ok(cairn, "compact", "6", "--physical") == "compacted revision 6\n"
    assert ok(cairn, "get", "c", "--rev=6") == "c\nv4\n"
    assert err(cairn, "get", "c", "--rev=5") == \
        "Error: etcdserver: mvcc: required revision has been compacted"


# ---------------------------------------------------------- snapshot / admin
def test_snapshot_save(cairn, tmp_path):
    ok(cairn, "put", "s", "1")
    path = str(tmp_path / "snap.db")
    out = ok(cairn, "snapshot", "save", path)
    assert out == "Snapshot saved at %s\n" % path
    assert os.path.getsize(path) > 0
    # `etcdctl snapshot status` parses a bbolt file: not expected for cairn.


def test_endpoint_status_health(cairn):
    ok(cairn, "put", "a", "1")
    j = js(cairn, "endpoint", "status")
    assert isinstance(j, list) and len(j) == 1
    e = j[0]
    assert e["Endpoint"] == cairn.endpoint
    st = e["Status"]
    for f in ("header", "version", "dbSize", "leader", "raftIndex", "raftTerm"):
        assert f in st, (f, st)
    assert st["header"]["revision"] == 2
    assert st["leader"] == st["header"]["member_id"]
    assert st["dbSize"] > 0 and st["raftTerm"] >= 1 and st["raftIndex"] >= 1
    assert re.match(r"^3\.\d+\.\d+", st["version"]), st["version"]

    out = ok(cairn, "endpoint", "status").strip()
    fields = [f.strip() for f in out.split(",")]
    assert fields[0] == cairn.endpoint
    assert fields[4] == "true"           # is leader
    assert fields[5] == "false"          # is learner

    p = cairn.etcdctl("endpoint", "health")
    assert p.returncode == 0, p.stderr
    # etcdctl 3.4 prints this on stderr, 3.5 on stdout.
    assert re.search(r"^%s is healthy: successfully committed proposal: took = "
                     % re.escape(cairn.endpoint), p.stdout + p.stderr, re.M), p.stderr
    j = js(cairn, "endpoint", "health")
    assert j[0]["endpoint"] == cairn.endpoint and j[0]["health"] is True


def test_member_and_alarm_list(cairn):
    out = ok(cairn, "member", "list").strip().split(", ")
    assert len(out) == 6, out
    assert re.match(r"^[0-9a-f]+$", out[0])
    assert out[1:3] == ["started", "n1"]
    assert out[4] == cairn.endpoint
    assert out[5] == "false"
    j = js(cairn, "member", "list")
    assert len(j["members"]) == 1
    m = j["members"][0]
    assert m["name"] == "n1" and m["clientURLs"] == [cairn.endpoint]
    assert "%x" % m["ID"] == out[0]
    assert ok(cairn, "alarm", "list") == ""


# -------------------------------------------------------------------- errors
def test_errors(cairn):
    assert err(cairn, "put", "", "v") == "Error: etcdserver: key is not provided"
    assert err(cairn, "get", "k", "--rev=99") == \
        "Error: etcdserver: mvcc: required revision is a future revision"
    assert err(cairn, "put", "--ignore-value", "nokey") == "Error: etcdserver: key not found"
    assert err(cairn, "txn", input='\nput a 1\nput a 2\n\n\n') == \
        "Error: etcdserver: duplicate key given in txn request"
