"""etcd's HTTP/JSON gateway (POST /v3/...), with curl, against cairn and a
real etcd: the same requests, the same statuses and bodies (ids, cluster and
member ids, and versions aside; for JSON the server cannot parse, the
status, code and shape, since the message is the parser's own).
"""

import base64
import json
import subprocess

import pytest


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def curl(server, path, body=None, method="POST", raw=None):
    """(HTTP status, parsed JSON body or the text)."""
    cmd = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method,
           "http://%s%s" % (server.host_port, path), "-H", "Content-Type: application/json"]
    if raw is not None:
        cmd += ["--data-binary", "@-"]
    elif body is not None:
        cmd += ["-d", json.dumps(body)]
    p = subprocess.run(cmd, input=raw, capture_output=True, timeout=30, check=True)
    text, _, status = p.stdout.decode().rpartition("\n")
    try:
        return int(status), json.loads(text)
    except ValueError:
        return int(status), text


IGNORED = {"cluster_id", "member_id", "raft_term"}


def norm(v):
    """Drops what differs between two servers by nature."""
    if isinstance(v, dict):
        return {k: ("<id>" if k in ("ID", "lease") else norm(x)) for k, x in v.items() if k not in IGNORED}
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v


def scenario(server):
    out = []

    def call(path, body=None, **kw):
        status, got = curl(server, path, body, **kw)
        out.append((path, status, norm(got)))
        return got

    call("/v3/kv/put", {"key": b64("foo"), "value": b64("bar")})
    call("/v3/kv/put", {"key": b64("foo2"), "value": b64("baz"), "prev_kv": True})
    call("/v3/kv/range", {"key": b64("foo")})
    call("/v3/kv/range", {"key": b64("foo"), "range_end": b64("fop"), "sortOrder": "DESCEND", "limit": 1})
    call("/v3/kv/range", {"key": b64("foo"), "range_end": b64("fop"), "count_only": True})
    call("/v3/kv/range", {"key": b64("nope")})
    call("/v3/kv/range", {"key": b64("foo"), "some_unknown_field": 1})
    call("/v3/kv/range", {"key": b64("foo"), "revision": "1000"})
    call("/v3/kv/range", {"key": b64("foo"), "sort_order": "NOPE"})
    call("/v3/kv/range")
    call("/v3/kv/put", {"value": b64("v")})
    cas = {"compare": [{"key": b64("foo"), "target": "VALUE", "result": "EQUAL", "value": b64("bar")}],
           "success": [{"request_put": {"key": b64("foo"), "value": b64("bar2")}}],
           "failure": [{"request_range": {"key": b64("foo")}}]}
    call("/v3/kv/txn", cas)
    call("/v3/kv/txn", cas)
    call("/v3/kv/deleterange", {"key": b64("foo2"), "prev_kv": True})
    rev = curl(server, "/v3/kv/put", {"key": b64("foo"), "value": b64("bar3")})[1]["header"]["revision"]
    call("/v3/kv/compaction", {"revision": rev})
    call("/v3/kv/range", {"key": b64("foo"), "revision": "2"})

    lease = call("/v3/lease/grant", {"TTL": 60})["ID"]
    call("/v3/kv/put", {"key": b64("leased"), "value": b64("x"), "lease": lease})
    status, ttl = curl(server, "/v3/lease/timetolive", {"ID": lease, "keys": True})
    out.append(("timetolive", status, ttl["grantedTTL"], ttl["keys"], 0 < int(ttl["TTL"]) <= 60))
    call("/v3/lease/revoke", {"ID": lease})
    call("/v3/lease/timetolive", {"ID": lease})
    call("/v3/lease/revoke", {"ID": lease})
    call("/v3/kv/range", {"key": b64("leased")})

    status, members = curl(server, "/v3/cluster/member/list", {})
    out.append(("member list", status, sorted(members), sorted(members["members"][0]),
                sorted(members["header"])))
    status, st = curl(server, "/v3/maintenance/status", {})
    out.append(("status", status, sorted(k for k in st if k not in ("version",))))

    status, lock = curl(server, "/v3/lock/lock", {"name": b64("mylock")})
    out.append(("lock", status, base64.b64decode(lock["key"]).startswith(b"mylock/")))
    call("/v3/lock/unlock", {"key": lock["key"]})
    call("/v3/election/leader", {"name": b64("nobody")})

    # What the gateway refuses before any server code runs.
    out.append(curl(server, "/v3/nope", {}))
    out.append(curl(server, "/v3/kv/range", method="GET")[0])
    for raw in (b"{bad", b'{"key": 5}', b"[]"):
        status, err = curl(server, "/v3/kv/range", raw=raw)
        out.append(("bad body", raw, status, sorted(err), err["code"]))
    big = json.dumps({"key": b64("big"), "value": b64(b"x" * (1700 * 1024))}).encode()
    out.append(("too large", curl(server, "/v3/kv/put", raw=big)))
    return out


def assert_same_answers(run, cairn, etcd):
    """`run` against both servers: the same answers, one by one."""
    got, want = run(cairn), run(etcd)
    for g, w in zip(got, want):
        assert g == w
    assert len(got) == len(want)


def test_gateway_as_etcd(cairn, etcd):
    assert_same_answers(scenario, cairn, etcd)


def test_gateway_json_mapping(cairn):
    """The mapping grpc-gateway prints: proto names, int64 as strings,
    bytes in base64, defaults left out."""
    curl(cairn, "/v3/kv/put", {"key": b64("k"), "value": b64("v")})
    status, r = curl(cairn, "/v3/kv/range", {"key": b64("k")})
    assert status == 200
    kv = r["kvs"][0]
    assert kv == {"key": b64("k"), "create_revision": kv["create_revision"], "mod_revision": kv["mod_revision"],
                  "version": "1", "value": b64("v")}
    assert isinstance(kv["create_revision"], str) and r["count"] == "1"
    assert "more" not in r and "lease" not in kv


def test_gateway_lock_waits_and_stop_is_not_held(server_factory):
    """A Lock through the gateway waits like a gRPC one; a server stopping
    with such a call in flight stops at once."""
    import threading
    import time
    s = server_factory()
    status, first = curl(s, "/v3/lock/lock", {"name": b64("g")})
    assert status == 200
    result = {}
    t = threading.Thread(target=lambda: result.update(r=curl(s, "/v3/lock/lock", {"name": b64("g")})),
                         daemon=True)
    t.start()
    time.sleep(0.5)
    assert t.is_alive()
    curl(s, "/v3/lock/unlock", {"key": first["key"]})
    t.join(10)
    assert result["r"][0] == 200 and result["r"][1]["key"] != first["key"]

    t = threading.Thread(target=lambda: result.update(w=curl(s, "/v3/lock/lock", {"name": b64("g")})),
                         daemon=True)
    t.start()
    time.sleep(0.5)
    began = time.monotonic()
    s.stop()
    assert time.monotonic() - began < 10
    t.join(10)
    assert not t.is_alive()


def stream(server, path, body, lines, timeout=10):
    """POSTs `body` (a JSON text) and reads `lines` lines of the streamed
    answer (fewer if it ends first): (status, headers, parsed lines). The
    connection is closed afterwards, which ends the call on the server."""
    import http.client
    host, port = server.host_port.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.getheader("Transfer-Encoding") != "chunked":
            return resp.status, dict(resp.getheaders()), json.loads(resp.read() or b"null")
        out = []
        while len(out) < lines:
            line = resp.readline()
            if not line:
                break
            out.append(json.loads(line))
        return resp.status, dict(resp.getheaders()), out
    finally:
        conn.close()


def stream_scenario(server):
    out = []
    key = b64("w")
    for v in ("a", "b"):
        curl(server, "/v3/kv/put", {"key": key, "value": b64(v)})
    status, headers, got = stream(server, "/v3/watch",
                                  json.dumps({"create_request": {"key": key, "start_revision": "1"}}), 2)
    out.append(("watch", status, headers.get("Content-Type"), norm(got)))
    # Two watches in one body: two created responses, by watch id.
    body = json.dumps({"create_request": {"key": key}}) + json.dumps({"create_request": {"key": b64("x")}})
    out.append(("two watches", norm(stream(server, "/v3/watch", body, 2)[2])))
    lease = curl(server, "/v3/lease/grant", {"TTL": 60})[1]["ID"]
    status, _, got = stream(server, "/v3/lease/keepalive", json.dumps({"ID": lease}) * 2, 5)
    out.append(("keepalive", status, norm(got)))  # two answers, then the stream ends
    out.append(("keepalive unknown", norm(stream(server, "/v3/lease/keepalive", '{"ID":"123"}', 5)[2])))
    status, _, err = stream(server, "/v3/watch", '{"bad', 1)
    out.append(("bad stream body", status, sorted(err), err["code"]))
    status, _, err = stream(server, "/v3/watch", '{"create_request":{"filters":["NOPE"]}}', 1)
    out.append(("bad enum", status, err))
    curl(server, "/v3/election/campaign", {"name": b64("e"), "lease": lease, "value": b64("v1")})
    status, _, got = stream(server, "/v3/election/observe", json.dumps({"name": b64("e")}), 1)
    out.append(("observe", status, base64.b64decode(got[0]["result"]["kv"]["value"])))
    status, _, got = stream(server, "/v3/maintenance/snapshot", "{}", 1)
    out.append(("snapshot", status, "blob" in got[0]["result"]))
    # etcd's 3.3 paths and CORS.
    status, beta = curl(server, "/v3beta/kv/range", {"key": key})
    out.append(("v3beta", status, norm(beta)))
    p = subprocess.run(["curl", "-s", "-i", "-X", "OPTIONS", "http://%s/v3/kv/put" % server.host_port],
                       capture_output=True, timeout=30, check=True)
    head = p.stdout.decode().split("\r\n")
    out.append(("options", head[0], sorted(h for h in head if h.startswith("Access-Control"))))
    return out


def test_gateway_streams_as_etcd(cairn, etcd):
    assert_same_answers(stream_scenario, cairn, etcd)


def metric(server, name):
    import re
    p = subprocess.run(["curl", "-s", "http://%s/metrics" % server.host_port], capture_output=True,
                       timeout=30, check=True)
    m = re.search(r"^%s (\S+)$" % re.escape(name), p.stdout.decode(), re.M)
    return float(m.group(1))


def test_gateway_watch_streams_events_and_ends_when_the_client_leaves(cairn):
    import http.client
    import time
    host, port = cairn.host_port.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/v3/watch", body=json.dumps({"create_request": {"key": b64("k")}}))
    resp = conn.getresponse()
    assert json.loads(resp.readline())["result"]["created"] is True
    assert metric(cairn, "etcd_debugging_mvcc_watcher_total") == 1
    for i in range(3):
        curl(cairn, "/v3/kv/put", {"key": b64("k"), "value": b64(str(i))})
        ev = json.loads(resp.readline())["result"]["events"]
        assert [base64.b64decode(e["kv"]["value"]) for e in ev] == [str(i).encode()]
    conn.close()
    deadline = time.monotonic() + 10
    while metric(cairn, "etcd_debugging_mvcc_watcher_total") != 0:
        assert time.monotonic() < deadline, "the watch outlived its HTTP client"
        time.sleep(0.05)


def test_gateway_waiting_locks_hold_no_thread_and_leave_with_their_client(cairn):
    """Lock calls waiting through the gateway do not take the listener's
    threads (/health still answers), and one whose client goes away gives up
    its place in the queue."""
    import http.client
    status, first = curl(cairn, "/v3/lock/lock", {"name": b64("q")})
    assert status == 200
    host, port = cairn.host_port.rsplit(":", 1)
    waiting = []
    for _ in range(4):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("POST", "/v3/lock/lock", body=json.dumps({"name": b64("q")}))
        waiting.append(conn)
    p = subprocess.run(["curl", "-s", "-m", "5", "http://%s/health" % cairn.host_port],
                       capture_output=True, timeout=30)
    assert json.loads(p.stdout)["health"] == "true"
    for conn in waiting:
        conn.close()
    # The queue is the holder alone again: the next Lock gets it on Unlock.
    curl(cairn, "/v3/lock/unlock", {"key": first["key"]})
    p = subprocess.run(["curl", "-s", "-m", "5", "http://%s/v3/lock/lock" % cairn.host_port,
                        "-d", json.dumps({"name": b64("q")})], capture_output=True, timeout=30)
    assert p.returncode == 0, "Lock still waiting behind clients that left"
    assert base64.b64decode(json.loads(p.stdout)["key"]).startswith(b"q/")


def test_gateway_doc_block(cairn):
    """docs/gateway.md's curl walk-through, against a fresh server; member and
    cluster ids (they follow the member's name and URLs) aside."""
    import os
    import re
    from test_readme import console_steps
    doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "gateway.md")

    def ids(line):
        return re.sub(r'"(cluster_id|member_id)":"\d+"', r'"\1":"<id>"', line)

    for cmd, expected in console_steps("gateway", doc):
        cmd = cmd.replace("127.0.0.1:2379", cairn.host_port)
        p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, "step failed: %s\nstderr: %s" % (cmd, p.stderr)
        assert [ids(l) for l in p.stdout.splitlines()] == [ids(l) for l in expected], cmd
