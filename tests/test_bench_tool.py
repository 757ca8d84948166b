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


def test_watch_with_the_writer_unbounded(cairn):
    # --put-rate 0: the writer goes as fast as its in-flight bound allows.
    r = run_bench(cairn, "--conns", 2, "--total", 400, "watch", "--watchers", 10,
                  "--streams", 2, "--put-rate", 0, "--max-puts-in-flight", 16)
    extra = r["extra"]
    assert r["errors"] == 0, r["error_messages"]
    assert extra["exactly_once"] is True and r["passed"] is True
    assert extra["puts_acked"] == 400 and extra["writer_stalls"] == 0
    assert extra["events_expected"] == extra["events_received"] == 400 * 10
    assert r["ok"] == 400 * 10


def test_watch_created_file_is_written_once_every_watcher_exists(cairn, tmp_path):
    # --created-file: written before the writer starts, with every watch created,
    # so a script can measure the server holding them (make bench's RSS per watcher).
    created = tmp_path / "created"
    r = run_bench(cairn, "--conns", 2, "--total", 20, "watch", "--watchers", 30,
                  "--streams", 3, "--put-rate", 100, "--created-file", str(created))
    assert r["errors"] == 0 and r["passed"] is True, r["error_messages"]
    assert created.exists() and created.read_text() == ""
    r = run_bench(cairn, "--conns", 1, "--total", 5, "watch", "--watchers", 2, "--streams", 1,
                  "--created-file", str(tmp_path / "no-such-dir" / "created"), expect_exit=1)
    assert r["passed"] is False and r["errors"] == 1
    assert any("cannot write --created-file" in m for m in r["error_messages"]), r


def test_unbounded_writer_needs_a_total(cairn):
    cmd = [bench_binary(), "--endpoints", cairn.endpoint, "--duration", "2", "watch",
           "--put-rate", "0"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "give --total puts, not --duration" in p.stderr
    cmd = [bench_binary(), "--endpoints", cairn.endpoint, "--total", "5", "watch",
           "--put-rate", "-1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--put-rate: must be >= 0" in p.stderr


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


@pytest.mark.parametrize("put_answer", ["inline", "thread", "cq"])
def test_ceiling_server_answers_put_and_range(tmp_path, put_answer):
    """cmd/cairn-ceiling (make bench's do-nothing server) serves what the
    bench runs against it: Put and Range, answered by etcdctl and cairn-bench
    as a store would answer them (versions and revisions count up, a range
    sees what was put), and stops on SIGTERM; whichever thread answers a Put
    (--put-answer)."""
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
    proc = subprocess.Popen([path, "--listen", endpoint, "--put-answer", put_answer], stdin=subprocess.DEVNULL,
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


# ---------------------------------------------- bench_report.py scale (no server)
def _scale_report(workload, throughput, p50, p99, errors=0, unit="ops", extra=None):
    p50, p99 = float(p50), float(p99)
    latency = {"p50": p50, "p90": p50 * 1.5, "p99": p99, "p99.9": p99 * 1.2,
               "max": p99 * 1.5, "min": p50 / 4, "mean": p50 * 1.1, "count": 1000}
    return {"workload": workload, "config": {}, "elapsed_seconds": 1.0, "ok": 1000,
            "errors": errors, "error_messages": {}, "unit": unit, "throughput": throughput,
            "latency_ms": latency, "kinds": {}, "extra": extra or {},
            "client_cpu_seconds": 0.5, "passed": errors == 0}


def _write_scale_results(results):
    """A results dir as scripts/bench-scale.sh leaves it, at two key counts and
    two watcher counts, with one run missing and one point not exactly once."""
    results.mkdir()

    def put(name, obj):
        # As cairn-bench --json prints it: one line (a stray line before it is ignored).
        (results / name).write_text("noise\n" + json.dumps(obj) + "\n")

    for server, f in (("etcd", 1.0), ("cairn", 2.0)):
        for n in (1000, 100000):
            big = n == 100000
            (results / ("resources-n%d.%s.json" % (n, server))).write_text(json.dumps(
                {"server": server, "keys": n, "rss_kb": int(51200 * f * (4 if big else 1)),
                 "hwm_kb": int(61440 * f), "rss_anon_kb": 1, "rss_file_kb": 1,
                 "disk_kb": int(10240 * f * (8 if big else 1)), "rss_end_kb": 1,
                 "disk_end_kb": 1}))
            put("load-n%d.%s.json" % (n, server), _scale_report("put", 9000 * f, 4, 12))
            put("put-n%d.%s.json" % (n, server),
                _scale_report("put", 8000 * f, 4.5, 14, errors=3 if big and server == "etcd" else 0))
            if not (big and server == "cairn"):
                put("range-l-n%d.%s.json" % (n, server), _scale_report("range", 20000 * f, 2, 7))
            put("range-s-n%d.%s.json" % (n, server), _scale_report("range", 25000 * f, 1.8, 6.5))
        for w in (100, 5000):
            once = not (w == 5000 and server == "etcd")
            put("watch-w%d.%s.json" % (w, server), _scale_report(
                "watch", w * 10 * f / 2, 1.5 * w / 100, 3.0 * w / 100, unit="events",
                extra={"streams": 10 if w == 100 else 50, "puts_acked": 10,
                       "put_rate_achieved": 9.9, "events_received": w * 10 - (0 if once else 7),
                       "events_expected": w * 10, "exactly_once": once}))
            if server == "cairn" and w == 100:  # RSS with the watchers, for one point only
                (results / ("resources-w%d.%s.json" % (w, server))).write_text(json.dumps(
                    {"server": server, "watchers": w, "streams": 10, "rss_idle_kb": 40000,
                     "rss_max_kb": 40100}))
    (results / "machine.txt").write_text("date: now\n")
    # Files of other workloads are not points of a curve.
    put("put-c64.cairn.json", _scale_report("put", 1, 1, 1))


def test_report_scale_tables_and_plots(tmp_path):
    """scripts/bench_report.py scale: the key-count and watcher tables from a
    synthetic results dir (no server), and both PNGs written (gnuplot)."""
    import shutil
    import sys
    if shutil.which("gnuplot") is None:
        pytest.fail("gnuplot not installed (scripts/setup.sh installs gnuplot-nox)")
    results, img = tmp_path / "results", tmp_path / "img"
    _write_scale_results(results)
    report = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts",
                          "bench_report.py")
    p = subprocess.run([sys.executable, report, "scale", str(results), "--img-dir", str(img)],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines
            if line.startswith("| etcd") or line.startswith("| cairn")]
    keys = [r for r in rows if len(r) == 13]
    watch = [r for r in rows if len(r) == 12]
    assert [(r[0], r[1]) for r in keys] == [
        ("etcd", "1,000"), ("etcd", "100,000"), ("cairn", "1,000"), ("cairn", "100,000")]
    # server | keys | RSS | peak RSS | disk | load | put | put p50/p99 | range l | p50/p99
    # | range s | p50/p99 | errors
    assert keys[0][2:] == ["50.0", "60.0", "10.0", "9,000", "8,000", "4.50 / 14.0",
                           "20,000", "2.00 / 7.00", "25,000", "1.80 / 6.50", "0"]
    assert keys[1][2] == "200" and keys[1][4] == "80.0" and keys[1][12] == "3"
    assert keys[3][2] == "400" and keys[3][6] == "16,000"
    assert keys[3][8] == "n/a" and keys[3][9] == "n/a / n/a"  # the missing run
    # server | watchers | streams | puts | rate | p50 | p99 | max | events/s
    # | received / expected | exactly once | RSS per watcher
    assert [(r[0], r[1], r[2]) for r in watch] == [
        ("etcd", "100", "10"), ("etcd", "5,000", "50"),
        ("cairn", "100", "10"), ("cairn", "5,000", "50")]
    assert watch[0][5:] == ["1.50", "3.00", "4.50", "500", "1,000 / 1,000", "yes", "n/a"]
    assert watch[2][11] == "1,024"  # 100 KiB more over 100 watchers
    assert watch[1][9:] == ["49,993 / 50,000", "NO", "n/a"]
    assert watch[3][5] == "75.0" and watch[3][8] == "50,000"
    assert "put-c64" not in p.stdout
    for name in ("scale-keys.png", "scale-watchers.png"):
        data = (img / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000, name
    assert (results / "scale-keys.cairn.dat").exists()
    assert (results / "scale-watchers.etcd.dat").exists()


def test_report_table_has_rss_per_watcher(tmp_path):
    """bench_report.py table: the rows of make bench's memory-per-watcher run
    (resources-watchers.<server>.json), per watcher less the idle RSS."""
    import sys
    results = tmp_path / "results"
    results.mkdir()
    for server, idle, held, peak in (("etcd", 20480, 200000, 220000),
                                     ("cairn", 30720, 80000, 130000)):
        (results / ("resources-watchers.%s.json" % server)).write_text(json.dumps(
            {"watchers": 100000, "streams": 1000, "rss_idle_kb": idle, "rss_held_kb": held,
             "rss_max_kb": peak}))
    report = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts",
                          "bench_report.py")
    p = subprocess.run([sys.executable, report, "table", str(results)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in p.stdout.splitlines()
            if line.startswith("|") and "---" not in line]
    assert rows[1] == ["100,000 watchers on 1,000 streams", "idle RSS (MiB)", "20.0", "30.0",
                       "1.50", "etcd"]
    # (200000 - 20480) KiB * 1024 / 100000 = 1,838 B; (80000 - 30720) -> 505 B
    assert rows[2] == ["", "RSS per watcher, held (B)", "1,838", "505", "0.27", "cairn"]
    assert rows[3] == ["", "RSS per watcher, peak (B)", "2,043", "1,017", "0.50", "cairn"]


def test_report_scale_without_results_fails(tmp_path):
    import sys
    report = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts",
                          "bench_report.py")
    p = subprocess.run([sys.executable, report, "scale", str(tmp_path), "--img-dir",
                        str(tmp_path / "img")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "no scale results" in p.stderr
    assert not (tmp_path / "img").exists()
