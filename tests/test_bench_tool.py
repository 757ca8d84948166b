"""cmd/cairn-bench: every workload runs briefly against the server under test
and its --json report is checked for correctness (counts add up, no errors,
the watch exactly-once check holds, what it wrote is really in the store).
Never timing: these pass on a loaded machine as on an idle one.

The binary is $CAIRN_BUILD/cmd/cairn-bench; with CAIRN_TEST_TARGET=etcd the
same checks validate the tool against the real etcd.
"""

import json
import os
import subprocess

import pytest
from etcd3.etcdrpc import rpc_pb2 as pb

import cluster

BENCH_TIMEOUT = 120


def bench_binary():
    build = os.environ.get("CAIRN_BUILD", "")
    if not build:
        pytest.skip("CAIRN_BUILD is not set: no cairn-bench to test")
    path = os.path.join(os.path.abspath(build), "cmd", "cairn-bench")
    assert os.path.exists(path), "cairn-bench not built at %s" % path
    return path


def run_bench(server, *args, expect_exit=0, json_output=True):
    cmd = [bench_binary(), "--endpoints", server.endpoint] + (["--json"] if json_output else [])
    cmd += [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=BENCH_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == expect_exit, "%s -> exit %d\nstdout: %s\nstderr: %s" % (
        " ".join(cmd), p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    if not json_output:
        return p.stdout
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, "expected one JSON line, got: %r" % p.stdout[-3000:]
    return json.loads(lines[0])


def check_latency(summary, count):
    assert summary["count"] == count
    if count == 0:
        return
    order = [summary[k] for k in ("min", "p50", "p90", "p99", "p99.9", "max")]
    assert order == sorted(order), summary
    assert summary["min"] <= summary["mean"] <= summary["max"], summary


def check_clean(report, workload, total):
    assert report["workload"] == workload
    assert report["errors"] == 0, report["error_messages"]
    assert report["error_messages"] == {}
    assert report["passed"] is True
    assert report["ok"] == total
    assert report["throughput"] > 0
    assert report["elapsed_seconds"] > 0
    check_latency(report["latency_ms"], total)


def keys_under(server, prefix):
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return server.kv.Range(pb.RangeRequest(key=prefix.encode(), range_end=end.encode()),
                           timeout=10).kvs


def test_put_random_keys(cairn):
    r = run_bench(cairn, "--clients", 4, "--conns", 2, "--total", 200,
                  "put", "--key-space", 50, "--val-size", 64, "--key-size", 12)
    check_clean(r, "put", 200)
    assert r["config"]["clients"] == 4 and r["config"]["conns"] == 2
    kvs = keys_under(cairn, "p/")
    assert 0 < len(kvs) <= 50
    assert all(len(kv.key) == 12 and len(kv.value) == 64 for kv in kvs)
    assert sum(kv.version for kv in kvs) == 200


def test_put_sequential_writes_every_key_once(cairn):
    r = run_bench(cairn, "--clients", 8, "--total", 300,
                  "put", "--sequential-keys", "--key-space", 300, "--key-prefix", "seq/")
    check_clean(r, "put", 300)
    kvs = keys_under(cairn, "seq/")
    assert len(kvs) == 300
    assert all(kv.version == 1 for kv in kvs)


def test_put_by_duration(cairn):
    r = run_bench(cairn, "--clients", 2, "--duration", 1, "put")
    assert r["errors"] == 0 and r["passed"]
    assert r["ok"] > 0 and r["elapsed_seconds"] >= 1.0
    check_latency(r["latency_ms"], r["ok"])


@pytest.mark.parametrize("consistency", ["l", "s"])
def test_range_single_key(cairn, consistency):
    r = run_bench(cairn, "--clients", 4, "--total", 400,
                  "range", "--consistency", consistency, "--key-space", 20)
    check_clean(r, "range", 400)
    assert r["config"]["consistency"] == {"l": "linearizable", "s": "serializable"}[consistency]
    assert len(keys_under(cairn, "r/")) == 20  # the preload


def test_range_prefix_of_n_keys(cairn):
    # Each Range must return all 25 keys, or it counts as an error.
    r = run_bench(cairn, "--clients", 3, "--total", 60, "range", "--keys-per-range", 25,
                  "--key-prefix", "pre/")
    check_clean(r, "range", 60)


def test_txn_put_cas_own_keys(cairn):
    r = run_bench(cairn, "--clients", 4, "--total", 300, "txn-put")
    check_clean(r, "txn-put", 300)
    assert r["extra"] == {"cas_committed": 300, "cas_conflicts": 0}
    kvs = keys_under(cairn, "t/")
    assert len(kvs) == 4  # one key per client by default
    assert sum(kv.version for kv in kvs) == 300


def test_txn_put_cas_shared_keys_counts_conflicts(cairn):
    r = run_bench(cairn, "--clients", 8, "--total", 400, "txn-put", "--shared-keys",
                  "--key-space", 2)
    check_clean(r, "txn-put", 400)
    committed, conflicts = r["extra"]["cas_committed"], r["extra"]["cas_conflicts"]
    assert committed + conflicts == 400 and committed > 0
    # Every committed CAS is exactly one new version of its key.
    assert sum(kv.version for kv in keys_under(cairn, "t/")) == committed
    assert r["kinds"]["committed"]["count"] == committed
    assert r["kinds"]["conflict"]["count"] == conflicts


def test_mixed(cairn):
    r = run_bench(cairn, "--clients", 4, "--total", 500, "mixed", "--key-space", 100,
                  "--read-fraction", 0.8)
    check_clean(r, "mixed", 500)
    reads, writes = r["extra"]["reads"], r["extra"]["writes"]
    assert reads + writes == 500 and reads > writes > 0
    check_latency(r["kinds"]["read"], reads)
    check_latency(r["kinds"]["write"], writes)
    kvs = keys_under(cairn, "m/")
    assert len(kvs) == 100  # preloaded
    assert sum(kv.version for kv in kvs) == 100 + writes


def test_lease_keepalive(cairn):
    r = run_bench(cairn, "--clients", 3, "--conns", 2, "--total", 150, "lease-keepalive",
                  "--ttl", 30)
    check_clean(r, "lease-keepalive", 150)
    # The tool revokes its leases when it is done.
    leases = cairn.lease.LeaseLeases(pb.LeaseLeasesRequest(), timeout=10).leases
    assert list(leases) == []


def test_watch_exactly_once(cairn):
    r = run_bench(cairn, "--conns", 2, "--total", 150, "watch", "--watchers", 12,
                  "--streams", 3, "--put-rate", 300, "--key-space", 7)
    extra = r["extra"]
    assert r["errors"] == 0, r["error_messages"]
    assert extra["exactly_once"] is True and r["passed"] is True
    assert extra["puts_acked"] == 150
    assert extra["events_expected"] == extra["events_received"] == 150 * 12
    assert extra["missing"] == extra["duplicates"] == extra["unexpected"] == 0
    assert extra["out_of_order"] == 0
    assert r["ok"] == 150 * 12 and r["unit"] == "events"
    check_latency(r["latency_ms"], 150 * 12)
    check_latency(r["kinds"]["put"], 150)


def test_errors_are_counted_not_hidden(cairn):
    # A value over the request size limit (1.5 MiB by default in etcd and
    # cairn): every put fails, the report says so, the exit status is 1.
    r = run_bench(cairn, "--clients", 2, "--total", 10, "put", "--val-size", 3 << 20,
                  expect_exit=1)
    assert r["ok"] == 0 and r["errors"] == 10
    assert r["passed"] is False
    assert sum(r["error_messages"].values()) == 10
    check_latency(r["latency_ms"], 0)


def test_text_report_without_progress_bar_when_piped(cairn):
    out = run_bench(cairn, "--total", 50, "put", json_output=False)
    assert "throughput:" in out and "p99.9" in out and "result:     PASS" in out
    assert "\r" not in out  # stdout is a pipe: no progress bar


def test_ready(cairn):
    r = run_bench(cairn, "ready", "--wait", 10)
    assert r["ready"] is True


def test_bad_usage_exits_2(cairn):
    cmd = [bench_binary(), "--endpoints", cairn.endpoint, "--clients", "0", "put"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--clients" in p.stderr


def test_put_and_range_over_mutual_tls(server_factory, tmp_path):
    """--cacert/--cert/--key (etcdctl's names): the bench talks TLS with a
    client certificate to a server that requires one."""
    from tls_certs import CertAuthority, ClientFiles
    ca = CertAuthority(tmp_path / "ca")
    srv = ca.issue("server", server=True)
    client = ca.issue("bench")
    s = server_factory(extra_args=["--cert-file", srv.cert, "--key-file", srv.key,
                                   "--trusted-ca-file", ca.cert],
                       client_tls=ClientFiles(ca.cert, client.cert, client.key))
    assert s.endpoint.startswith("https://")
    tls = ["--cacert", ca.cert, "--cert", client.cert, "--key", client.key]
    r = run_bench(s, *tls, "--clients", 4, "--conns", 2, "--total", 100, "put", "--key-space", 20)
    check_clean(r, "put", 100)
    assert r["config"]["tls"] is True
    assert sum(kv.version for kv in keys_under(s, "p/")) == 100
    r = run_bench(s, *tls, "--clients", 4, "--conns", 2, "--total", 100, "range", "--key-space", 10)
    check_clean(r, "range", 100)
    # Half a key pair is bad usage, refused before connecting.
    out = run_bench(s, "--cacert", ca.cert, "--cert", client.cert, "--total", 1, "put",
                    expect_exit=2, json_output=False)
    assert out == ""


def test_put_and_range_as_a_user_with_auth_on(cairn):
    """--user name:password: one Authenticate, then the token on every call;
    without it the same run is refused (etcd's "user name is empty")."""
    cairn.etcdctl("user", "add", "root:pw", check=True)
    cairn.etcdctl("auth", "enable", check=True)
    r = run_bench(cairn, "--user", "root:pw", "--clients", 4, "--conns", 2, "--total", 100,
                  "put", "--key-space", 20)
    check_clean(r, "put", 100)
    assert r["config"]["auth"] is True
    r = run_bench(cairn, "--user", "root:pw", "--clients", 4, "--conns", 2, "--total", 100,
                  "range", "--key-space", 10)
    check_clean(r, "range", 100)
    r = run_bench(cairn, "--clients", 1, "--total", 5, "put", expect_exit=1)
    assert r["errors"] == 5, r
    assert any("user name is empty" in m for m in r["error_messages"]), r["error_messages"]
    out = run_bench(cairn, "--user", "root:wrong", "--total", 1, "put", expect_exit=2, json_output=False)
    assert out == ""


def test_ceiling_server_answers_put_and_range(tmp_path):
    """cmd/cairn-ceiling (make bench's do-nothing server) serves what the
    bench runs against it: Put and Range, answered by etcdctl and cairn-bench
    as a store would answer them (versions and revisions count up, a range
    sees what was put), and stops on SIGTERM."""
    import shutil
    import signal
    import socket
    if cluster.TARGET != "cairn":
        pytest.skip("cairn's own tool")
    path = os.path.join(os.path.dirname(bench_binary()), "cairn-ceiling")
    assert os.path.exists(path), "cairn-ceiling not built at %s" % path
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = "127.0.0.1:%d" % port
    proc = subprocess.Popen([path, "--listen", endpoint], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ready = [bench_binary(), "--endpoints", endpoint, "--json", "ready", "--wait", "30"]
        assert subprocess.run(ready, capture_output=True, timeout=60).returncode == 0
        etcdctl = shutil.which("etcdctl")
        env = dict(os.environ, ETCDCTL_API="3")
        def ctl(*args):
            return subprocess.run([etcdctl, "--endpoints", endpoint] + list(args), env=env,
                                  capture_output=True, text=True, timeout=30)
        assert ctl("put", "/k", "v1").stdout.strip() == "OK"
        assert ctl("put", "/k", "v2").stdout.strip() == "OK"
        got = json.loads(ctl("get", "/k", "-w", "json").stdout)
        assert got["kvs"][0]["version"] == 2 and got["kvs"][0]["create_revision"] == 2
        assert got["kvs"][0]["mod_revision"] == 3 == got["header"]["revision"]
        # Txn and the rest are not served: a ceiling, not a store.
        assert ctl("del", "/k").returncode != 0
        cmd = [bench_binary(), "--endpoints", endpoint, "--json", "--clients", "8", "--conns", "2",
               "--total", "500", "put", "--key-prefix", "r/", "--key-space", "100",
               "--sequential-keys"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=BENCH_TIMEOUT)
        check_clean(json.loads(p.stdout.strip().splitlines()[-1]), "put", 500)
        cmd = [bench_binary(), "--endpoints", endpoint, "--json", "--clients", "8", "--conns", "2",
               "--total", "500", "range", "--key-space", "100", "--no-preload"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=BENCH_TIMEOUT)
        check_clean(json.loads(p.stdout.strip().splitlines()[-1]), "range", 500)
        got = json.loads(ctl("get", "r/", "--prefix", "--keys-only", "-w", "json").stdout)
        assert got["count"] == 100 == len(got["kvs"])
        got = json.loads(ctl("get", "r/", "--prefix", "--limit", "7", "-w", "json").stdout)
        assert (got["count"], len(got["kvs"]), got["more"]) == (100, 7, True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
