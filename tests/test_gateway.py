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


def test_gateway_as_etcd(cairn, etcd):
    got = scenario(cairn)
    want = scenario(etcd)
    for g, w in zip(got, want):
        assert g == w
    assert len(got) == len(want)


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
