"""Start-up: etcd's flags and YAML config file, and data folders that are not
cairn's or are corrupt are refused with a clear message (never opened, never
modified)."""

import os
import subprocess

import pytest

import cluster
from etcd3.etcdrpc import rpc_pb2 as pb

pytestmark = pytest.mark.skipif(cluster.TARGET != "cairn", reason="cairn's own start-up")


def run_cairn(*args, timeout=20):
    return subprocess.run([cluster.cairn_binary(), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_refuses_foreign_data_dir(tmp_path):
    d = tmp_path / "etcd-data"
    (d / "member" / "wal").mkdir(parents=True)
    (d / "member" / "wal" / "0.wal").write_bytes(b"not cairn")
    p = run_cairn("--data-dir", str(d), "--listen-client-urls",
                  "http://127.0.0.1:%d" % cluster.free_port())
    assert p.returncode != 0
    assert "holds no cairn database" in p.stderr
    assert (d / "member" / "wal" / "0.wal").read_bytes() == b"not cairn"


def test_refuses_corrupt_database(tmp_path):
    d = tmp_path / "data"
    (d / "cairn.db").mkdir(parents=True)
    (d / "cairn.db" / "CURRENT").write_text("garbage\n")
    p = run_cairn("--data-dir", str(d), "--listen-client-urls",
                  "http://127.0.0.1:%d" % cluster.free_port())
    assert p.returncode != 0
    assert "cannot open the database" in p.stderr and "orrupt" in p.stderr


def test_rejects_bad_flags(tmp_path):
    p = run_cairn("--no-such-flag")
    assert p.returncode != 0 and "--no-such-flag" in p.stderr
    p = run_cairn("--data-dir", str(tmp_path / "d"), "--listen-client-urls", "127.0.0.1:2379")
    assert p.returncode != 0 and "scheme" in p.stderr
    p = run_cairn("--data-dir", str(tmp_path / "d"), "--auto-compaction-mode", "hourly")
    assert p.returncode != 0 and "auto-compaction-mode" in p.stderr
    for bad in ("2s", "10", "fast", "-5ms"):
        p = run_cairn("--data-dir", str(tmp_path / "d"), "--experimental-watch-batch-interval", bad)
        assert p.returncode != 0, bad
        assert ("--experimental-watch-batch-interval must be a duration from 0 to 1s (set to '%s')"
                % bad) in p.stderr, (bad, p.stderr)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("data-dir: %s\nexperimental-watch-batch-interval: 5s\n" % (tmp_path / "d"))
    p = run_cairn("--config-file", str(cfg))
    assert p.returncode != 0 and "(set to '5s')" in p.stderr, p.stderr
    assert not (tmp_path / "d").exists()


def test_config_file(tmp_path):
    port = cluster.free_port()
    cfg = tmp_path / "cairn.yaml"
    cfg.write_text(
        "name: from-yaml\n"
        "data-dir: %s\n"
        "listen-client-urls: http://127.0.0.1:%d\n"
        "advertise-client-urls: http://127.0.0.1:%d\n"
        "max-txn-ops: 3\n" % (tmp_path / "data", port, port))
    proc = subprocess.Popen([cluster.cairn_binary(), "--config-file", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    cluster._CHILDREN.add(proc)  # killed at session end if the test dies early
    try:
        import grpc
        from etcd3.etcdrpc import rpc_pb2_grpc
        ch = grpc.insecure_channel("127.0.0.1:%d" % port)
        grpc.channel_ready_future(ch).result(timeout=20)
        members = rpc_pb2_grpc.ClusterStub(ch).MemberList(pb.MemberListRequest(), timeout=10)
        assert members.members[0].name == "from-yaml"
        ops = [pb.RequestOp(request_put=pb.PutRequest(key=b"k%d" % i)) for i in range(4)]
        with pytest.raises(grpc.RpcError) as e:
            rpc_pb2_grpc.KVStub(ch).Txn(pb.TxnRequest(success=ops), timeout=10)
        assert e.value.details() == "etcdserver: too many operations in txn request"
        ch.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert os.path.isdir(tmp_path / "data" / "cairn.db")


def test_bootstrap_flag_errors_are_etcds(tmp_path):
    port = cluster.free_port()
    base = ["--data-dir", str(tmp_path / "d"), "--listen-client-urls", "http://127.0.0.1:%d" % port,
            "--advertise-client-urls", "http://127.0.0.1:%d" % port]
    cases = [
        (["--name", "a", "--initial-cluster", "b=http://127.0.0.1:1"],
         'couldn\'t find local name "a" in the initial cluster configuration'),
        (["--name", "a", "--initial-advertise-peer-urls", "http://127.0.0.1:1",
          "--initial-cluster", "a=http://127.0.0.1:1,b=http://127.0.0.1:1"],
         "has duplicate url"),
        (["--name", "a", "--initial-advertise-peer-urls", "http://127.0.0.1:2",
          "--initial-cluster", "a=http://127.0.0.1:1"],
         "--initial-cluster has a=http://127.0.0.1:1 but missing from "
         "--initial-advertise-peer-urls=http://127.0.0.1:2"),
        (["--initial-cluster-state", "old"], 'unexpected clusterState "old"'),
        (["--heartbeat-interval", "0"], "--heartbeat-interval must be >0 (set to 0ms)"),
        (["--heartbeat-interval", "100", "--election-timeout", "300"],
         "--election-timeout[300ms] should be at least as 5 times as --heartbeat-interval[100ms]"),
    ]
    for extra, message in cases:
        p = run_cairn(*base, *extra)
        assert p.returncode != 0, extra
        assert message in p.stderr, (extra, p.stderr)
    assert not (tmp_path / "d").exists()


def test_flags_from_etcd_environment_variables(tmp_path):
    """Debian's etcd.service configures etcd with ETCD_* variables (and
    /etc/default/etcd); cairn reads them as etcd does, refuses a variable
    shadowed by a flag with etcd's message, and tells systemd it is ready."""
    import socket
    port = cluster.free_port()
    env = dict(os.environ, ETCD_NAME="from-env", ETCD_DATA_DIR=str(tmp_path / "env-data"),
               ETCD_LISTEN_CLIENT_URLS="http://127.0.0.1:%d" % port,
               ETCD_ADVERTISE_CLIENT_URLS="http://127.0.0.1:%d" % port,
               ETCD_LISTEN_PEER_URLS="http://127.0.0.1:%d" % cluster.free_port())
    p = subprocess.run([cluster.cairn_binary(), "--name", "flag"], env=env, capture_output=True,
                       text=True, timeout=20)
    assert p.returncode != 0
    assert 'conflicting environment variable "ETCD_NAME" is shadowed by corresponding ' \
           "command-line flag (either unset environment variable or disable flag)" in p.stderr
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(20)
    env["NOTIFY_SOCKET"] = str(notify)
    proc = subprocess.Popen([cluster.cairn_binary()], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert sock.recv(64) == b"READY=1"
        out = subprocess.run([cluster.ETCDCTL_BIN, "--endpoints", "127.0.0.1:%d" % port,
                              "member", "list"], env=cluster.etcdctl_env(), capture_output=True,
                             text=True, timeout=20)
        assert out.returncode == 0, out.stderr
        assert ", started, from-env, " in out.stdout
        assert (tmp_path / "env-data" / "cairn.db").exists()
    finally:
        proc.kill()
        proc.wait(20)
        sock.close()


def test_threads_are_named_and_jemalloc_is_the_allocator(cairn):
    """Per-thread profiles (top -H, ps -L, perf) need the threads' names; the
    allocator is jemalloc (docs/benchmarks.md), not glibc's malloc."""
    cairn.kv.Put(pb.PutRequest(key=b"k", value=b"v"), timeout=10)
    names = set()
    for tid in os.listdir("/proc/%d/task" % cairn.pid):
        with open("/proc/%d/task/%s/comm" % (cairn.pid, tid)) as f:
            names.add(f.read().strip())
    # watch-pace: the watch batch interval is on by default (40ms).
    assert {"cairn-raft", "cairn-apply", "cairn-read", "watch-pace"} <= names, sorted(names)
    with open("/proc/%d/maps" % cairn.pid) as f:
        assert "libjemalloc" in f.read()
