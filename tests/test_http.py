"""HTTP endpoints on the client URL (and on --listen-metrics-urls), via curl."""

import json
import re
import subprocess

from etcd3.etcdrpc import rpc_pb2 as pb

import cluster


def curl(url):
    """Returns (status, content_type, body)."""
    p = subprocess.run(["curl", "-sS", "-m", "20", "-o", "-", "-w",
                        "\n%{http_code} %{content_type}", url],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "curl %s: %s" % (url, p.stderr)
    body, _, tail = p.stdout.rpartition("\n")
    code, _, ctype = tail.partition(" ")
    return int(code), ctype, body


def samples(text):
    """Prometheus text format -> {(name, frozenset(labels)): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
        assert m, "bad metrics line: %r" % line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def check_health(base):
    code, ctype, body = curl(base + "/health")
    assert code == 200, (code, body)
    j = json.loads(body)
    # etcd 3.4: {"health":"true"}; 3.5 adds "reason":"" - both accepted.
    assert j["health"] == "true", body
    assert set(j) <= {"health", "reason"} and j.get("reason", "") == "", body


def check_metrics(base, min_puts):
    code, ctype, body = curl(base + "/metrics")
    assert code == 200
    assert ctype.startswith("text/plain"), ctype
    s = samples(body)
    names = {n for n, _ in s}
    assert s[("etcd_server_has_leader", frozenset())] == 1
    assert s[("etcd_mvcc_db_total_size_in_bytes", frozenset())] > 0
    assert "etcd_disk_wal_fsync_duration_seconds_bucket" in names
    assert ("etcd_disk_wal_fsync_duration_seconds_bucket", frozenset({("le", "+Inf")})) in s
    assert "grpc_server_handled_total" in names
    assert "# TYPE grpc_server_handled_total counter" in body
    puts = s.get(("grpc_server_handled_total", frozenset({
        ("grpc_code", "OK"), ("grpc_method", "Put"),
        ("grpc_service", "etcdserverpb.KV"), ("grpc_type", "unary")})), 0)
    assert puts >= min_puts, "grpc_server_handled_total for Put = %s" % puts


def test_health(cairn):
    check_health(cairn.endpoint)


def test_version(cairn):
    code, _, body = curl(cairn.endpoint + "/version")
    assert code == 200
    j = json.loads(body)
    assert set(j) >= {"etcdserver", "etcdcluster"}, j
    assert re.match(r"^3\.\d+\.\d+", j["etcdserver"]), j
    assert re.match(r"^3\.\d+\.\d+", j["etcdcluster"]), j


def test_metrics(cairn):
    for i in range(3):
        cairn.kv.Put(pb.PutRequest(key=b"m%d" % i, value=b"v"), timeout=10)
    check_metrics(cairn.endpoint, min_puts=3)


def test_listen_metrics_urls(server_factory):
    port = cluster.free_port()
    srv = server_factory(extra_args=["--listen-metrics-urls", "http://127.0.0.1:%d" % port])
    for i in range(2):
        srv.kv.Put(pb.PutRequest(key=b"m%d" % i, value=b"v"), timeout=10)
    base = "http://127.0.0.1:%d" % port
    check_metrics(base, min_puts=2)
    check_health(base)
