"""Start and stop single-node servers (cairn or the real etcd) for the e2e suite.

A Server owns one process, one data dir and a fixed pair of loopback ports
(the ports are kept across restart(), so endpoints stay valid).  Every
process started here is registered in _LIVE and killed at teardown and at
interpreter exit, so a failing test never leaves a stray server behind.
"""

import atexit
import collections
import os
import shutil
import signal
import socket
import subprocess
import time

import grpc
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

ETCD_BIN = os.environ.get("CAIRN_ETCD_BIN", "/usr/bin/etcd")
ETCDCTL_BIN = os.environ.get("CAIRN_ETCDCTL_BIN", "/usr/bin/etcdctl")
READY_TIMEOUT = float(os.environ.get("CAIRN_READY_TIMEOUT", "30"))

# Which server the `cairn` fixture starts: "cairn" (default) or "etcd".
TARGET = os.environ.get("CAIRN_TEST_TARGET", "cairn").strip() or "cairn"

_LIVE = set()

# What a serving member with auth enabled answers a request without a token.
AUTH_REFUSALS = {"etcdserver: user name is empty", "etcdserver: permission denied"}


def cairn_binary():
    build = os.environ.get("CAIRN_BUILD", "")
    if not build:
        return None
    return os.path.join(os.path.abspath(build), "cmd", "cairn")


_HANDED_OUT = collections.deque(maxlen=512)


def free_port():
    """A port nobody listens on, never one of the last 512 handed out (the
    kernel may give a just-closed ephemeral port again, and a cluster asks
    for several before any member binds them)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.append(port)
            return port
    raise RuntimeError("no free port found")


def etcdctl_env():
    env = dict(os.environ, ETCDCTL_API="3")
    for k in list(env):
        # Do not let a developer's environment (ETCDCTL_ENDPOINTS, ...) leak in.
        if k.startswith("ETCDCTL_") and k != "ETCDCTL_API":
            del env[k]
    return env


# Client TLS files by "127.0.0.1:port", for every server started with
# client_tls: make_channel() (and so every helper that dials a member by
# its address: history.py, nemesis.py) speaks TLS to those.
TLS_BY_HOST_PORT = {}


def make_channel(host_port, options=None):
    """A gRPC channel to a member: TLS with its client files if it has any."""
    t = TLS_BY_HOST_PORT.get(host_port)
    if not t:
        return grpc.insecure_channel(host_port, options=options)

    def read(path):
        with open(path, "rb") as f:
            return f.read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(t.ca),
        private_key=read(t.key) if t.key else None,
        certificate_chain=read(t.cert) if t.cert else None)
    return grpc.secure_channel(host_port, creds, options=options)


def tls_args_for(host_port):
    """etcdctl's TLS flags for a member, [] for a plain one."""
    t = TLS_BY_HOST_PORT.get(host_port)
    if not t:
        return []
    args = ["--cacert", t.ca]
    if t.cert:
        args += ["--cert", t.cert, "--key", t.key]
    return args


def small_wal_segments(extra_args):
    """Tests run cairn with 4 MiB WAL segments instead of 64 MiB ones: each
    member preallocates two, and a suite of a few hundred servers would
    otherwise write tens of GB.  A test that sets the flag itself wins."""
    if any(a.startswith("--experimental-log-segment-bytes") for a in extra_args):
        return []
    return ["--experimental-log-segment-bytes", str(4 << 20)]


class ServerError(Exception):
    pass


class Server:
    """One single-node server process.

    kind: "cairn" or "etcd".  extra_args: flags appended verbatim (e.g.
    ["--quota-backend-bytes", "1048576"]).  client_tls: None for an http://
    client URL, else an https:// one, and the files this harness's own
    clients (gRPC, etcdctl, python-etcd3) use: an object with .ca and
    optionally .cert/.key (tls_certs.ClientFiles); the server's TLS flags go
    in extra_args.
    """

    def __init__(self, kind, base_dir, name="n1", extra_args=(), client_tls=None):
        assert kind in ("cairn", "etcd"), kind
        self.kind = kind
        self.name = name
        self.base_dir = str(base_dir)
        os.makedirs(self.base_dir, exist_ok=True)
        self.data_dir = os.path.join(self.base_dir, "data")
        self.log_path = os.path.join(self.base_dir, "server.log")
        self.extra_args = list(extra_args)
        self.client_port = free_port()
        self.peer_port = free_port()
        self._client_tls = None
        self.client_tls = client_tls
        self.proc = None
        self._log = None
        self._channel = None
        self.starts = 0
        # Set by ReplicatedCluster: "name=url,..." and the token of a
        # multi-member cluster (None: this member alone).
        self.initial_cluster = None
        self.cluster_token = None

    # ---------------------------------------------------------------- info
    @property
    def host_port(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def endpoint(self):
        scheme = "https" if self.client_tls else "http"
        return "%s://127.0.0.1:%d" % (scheme, self.client_port)

    @property
    def client_tls(self):
        return self._client_tls

    @client_tls.setter
    def client_tls(self, files):
        TLS_BY_HOST_PORT.pop(self.host_port, None)
        self._client_tls = files
        if files:
            TLS_BY_HOST_PORT[self.host_port] = files

    def _grpc_channel(self, options=None):
        return make_channel(self.host_port, options=options)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def __repr__(self):
        return "<Server %s %s pid=%s>" % (self.kind, self.endpoint, self.pid)

    # ------------------------------------------------------------- command
    def command(self):
        url = self.endpoint
        if self.kind == "cairn":
            binary = cairn_binary()
            if not binary or not os.path.exists(binary):
                raise ServerError(
                    "cairn binary not found (CAIRN_BUILD=%r -> %r); build it, or run "
                    "the suite against etcd with CAIRN_TEST_TARGET=etcd"
                    % (os.environ.get("CAIRN_BUILD"), binary))
            cmd = [binary]
        else:
            cmd = [ETCD_BIN]
        cmd += ["--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", url, "--advertise-client-urls", url]
        peer = "http://127.0.0.1:%d" % self.peer_port
        cmd += ["--listen-peer-urls", peer,
                "--initial-advertise-peer-urls", peer,
                "--initial-cluster", self.initial_cluster or "%s=%s" % (self.name, peer)]
        if self.cluster_token:
            cmd += ["--initial-cluster-token", self.cluster_token]
        if self.kind == "etcd":
            # etcd 3.4 defaults to the deprecated capnslog logger.
            cmd += ["--logger", "zap", "--log-outputs", "stderr"]
        if not any(a.startswith("--log-level") for a in self.extra_args):
            cmd += ["--log-level", "error" if self.kind == "etcd" else "warn"]
        if self.kind == "cairn":
            cmd += small_wal_segments(self.extra_args)
        return cmd + self.extra_args

    # ----------------------------------------------------------- lifecycle
    def start(self, timeout=READY_TIMEOUT):
        """Start and wait until ready.  On the very first start, an early exit
        is retried with fresh ports (another process may have taken a port
        between free_port() and the bind)."""
        attempts = 3 if self.starts == 0 else 1
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except ServerError:
                exited = self.proc is not None and self.proc.poll() is not None
                if attempt + 1 == attempts or not exited or \
                        "address already in use" not in self.log_tail().lower():
                    raise
                TLS_BY_HOST_PORT.pop(self.host_port, None)
                self.client_port = free_port()
                self.peer_port = free_port()
                self.client_tls = self._client_tls  # under the new address
                self.starts = 0
                shutil.rmtree(self.data_dir, ignore_errors=True)

    def launch(self):
        """Start the process without waiting for it to be ready (members of
        a cluster become ready only together)."""
        assert not self.alive(), "already running"
        cmd = self.command()
        self._log = open(self.log_path, "ab")
        self._log.write(("\n==== start #%d: %s\n" % (self.starts + 1, " ".join(cmd))).encode())
        self._log.flush()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.base_dir,
                                     start_new_session=True)
        self.starts += 1
        _LIVE.add(self)
        return self

    def _start_once(self, timeout):
        self.launch()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill9()
            raise
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError("%s exited with %s during startup:\n%s"
                                  % (self, self.proc.returncode, self.log_tail()))
            try:
                with self._grpc_channel() as ch:
                    stub = rpc_pb2_grpc.MaintenanceStub(ch)
                    st = stub.Status(rpc_pb2.StatusRequest(), timeout=2)
                    if st.leader != 0:
                        # A write-capable server: one cheap range must work too.
                        rpc_pb2_grpc.KVStub(ch).Range(
                            rpc_pb2.RangeRequest(key=b"\0"), timeout=2)
                        return
            except grpc.RpcError as e:
                if e.details() in AUTH_REFUSALS:
                    return  # auth is on: it answers, so it serves
                last = e
            time.sleep(0.05)
        raise ServerError("%s not ready after %.0fs (last error: %s)\n%s"
                          % (self, timeout, last, self.log_tail()))

    def _close_channel(self):
        if self._channel is not None:
            try:
                self._channel.close()
            except Exception:
                pass
            self._channel = None

    def _reap(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(30)
        _LIVE.discard(self)
        if self._log:
            self._log.close()
            self._log = None

    def _signal(self, sig):
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout=20):
        """Graceful stop (SIGTERM), SIGKILL if it does not exit in time."""
        self._close_channel()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
        self._reap(timeout)

    def kill9(self):
        self._close_channel()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
        self._reap(30)

    def restart(self, timeout=READY_TIMEOUT, graceful=True):
        if graceful:
            self.stop()
        else:
            self.kill9()
        return self.start(timeout)

    def cleanup(self):
        self.kill9()

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
            return data[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    # --------------------------------------------------------------- gRPC
    def channel(self):
        if self._channel is None:
            self._channel = self._grpc_channel(
                options=[("grpc.max_receive_message_length", 64 << 20),
                         ("grpc.max_send_message_length", 64 << 20)])
        return self._channel

    @property
    def kv(self):
        return rpc_pb2_grpc.KVStub(self.channel())

    @property
    def lease(self):
        return rpc_pb2_grpc.LeaseStub(self.channel())

    @property
    def watch(self):
        return rpc_pb2_grpc.WatchStub(self.channel())

    @property
    def maint(self):
        return rpc_pb2_grpc.MaintenanceStub(self.channel())

    @property
    def cluster(self):
        return rpc_pb2_grpc.ClusterStub(self.channel())

    def revision(self):
        return self.kv.Range(rpc_pb2.RangeRequest(key=b"\0"), timeout=10).header.revision

    def client(self):
        """A python-etcd3 high-level client; the caller closes it."""
        import etcd3
        t = self.client_tls
        if t:
            return etcd3.client(host="127.0.0.1", port=self.client_port, timeout=10,
                                ca_cert=t.ca, cert_cert=t.cert, cert_key=t.key)
        return etcd3.client(host="127.0.0.1", port=self.client_port, timeout=10)

    def tls_args(self):
        """etcdctl's flags for this server's client TLS files."""
        return tls_args_for(self.host_port)

    # ------------------------------------------------------------ etcdctl
    def etcdctl(self, *args, input=None, timeout=30, check=False):
        env = etcdctl_env()
        cmd = [ETCDCTL_BIN, "--endpoints", self.endpoint, "--dial-timeout", "10s",
               "--command-timeout", "20s"] + self.tls_args() + [str(a) for a in args]
        p = subprocess.run(cmd, input=input, capture_output=True, text=True,
                           timeout=timeout, env=env)
        if check and p.returncode != 0:
            raise AssertionError("%s failed (%d):\nstdout: %s\nstderr: %s"
                                 % (cmd, p.returncode, p.stdout, p.stderr))
        return p

    def etcdctl_popen(self, *args):
        env = etcdctl_env()
        cmd = [ETCDCTL_BIN, "--endpoints", self.endpoint, "--dial-timeout", "10s"] + \
            self.tls_args() + [str(a) for a in args]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, start_new_session=True)
        _CHILDREN.add(p)
        return p


_CHILDREN = set()


class ReplicatedCluster:
    """N members of one new cluster (cairn or etcd) on loopback ports, each
    a Server.  start() launches them all, then waits for each to be ready;
    a member restarted alone (members[i].restart()) rejoins with the same
    flags."""

    def __init__(self, kind, base_dir, size=3, token="cairn-test", extra_args=()):
        self.kind = kind
        self.members = [Server(kind, os.path.join(str(base_dir), "m%d" % (i + 1)),
                               name="m%d" % (i + 1), extra_args=extra_args)
                        for i in range(size)]
        initial = ",".join("%s=http://127.0.0.1:%d" % (m.name, m.peer_port)
                           for m in self.members)
        for m in self.members:
            m.initial_cluster = initial
            m.cluster_token = token

    def start(self, timeout=READY_TIMEOUT):
        for m in self.members:
            m.launch()
        try:
            for m in self.members:
                m.wait_ready(timeout)
        except BaseException:
            self.cleanup()
            raise
        return self

    def endpoints(self):
        return ",".join(m.host_port for m in self.members)

    def statuses(self, timeout=5):
        out = []
        for m in self.members:
            if not m.alive():
                out.append(None)
                continue
            try:
                out.append(m.maint.Status(rpc_pb2.StatusRequest(), timeout=timeout))
            except grpc.RpcError:
                out.append(None)
        return out

    def leader(self, timeout=READY_TIMEOUT, exclude=None):
        """The member that leads, as a quorum of live members reports it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = [st.leader for st in self.statuses() if st is not None]
            for m in self.members:
                if m is exclude or not m.alive():
                    continue
                try:
                    mine = m.maint.Status(rpc_pb2.StatusRequest(), timeout=5).header.member_id
                except grpc.RpcError:
                    continue
                if ids.count(mine) * 2 > len(self.members):
                    return m
            time.sleep(0.1)
        raise ServerError("no leader after %.0fs:\n%s" % (
            timeout, "\n".join(m.log_tail(1500) for m in self.members)))

    def cleanup(self):
        for m in self.members:
            m.kill9()


def stop_child(p):
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        pass
    for f in (p.stdout, p.stderr):
        if f:
            try:
                f.close()
            except Exception:
                pass
    _CHILDREN.discard(p)


def cleanup_all():
    for s in list(_LIVE):
        try:
            s.kill9()
        except Exception:
            pass
    for p in list(_CHILDREN):
        stop_child(p)


atexit.register(cleanup_all)


class WatchStream:
    """One raw gRPC Watch stream with a single watcher.

    Responses are read by a background thread into a queue; next_response()
    and collect_events() poll it with deadlines.
    """

    def __init__(self, server, create_request, timeout=60):
        import queue
        import threading
        self._queue_mod = queue
        self._reqs = queue.Queue()
        self._out = queue.Queue()
        self._reqs.put(rpc_pb2.WatchRequest(create_request=create_request))
        self.call = server.watch.Watch(self._request_iter(), timeout=timeout)
        self.responses = []
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()

    def _request_iter(self):
        while True:
            r = self._reqs.get()
            if r is None:
                return
            yield r

    def _reader(self):
        try:
            for resp in self.call:
                self._out.put(resp)
        except Exception as e:  # cancelled at close(), or a real error
            self._out.put(e)
        self._out.put(None)

    def send(self, req):
        self._reqs.put(req)

    def next_response(self, timeout=20):
        """The next WatchResponse; raises AssertionError on timeout/stream end."""
        try:
            r = self._out.get(timeout=timeout)
        except self._queue_mod.Empty:
            raise AssertionError("no watch response within %ss" % timeout)
        if r is None or isinstance(r, Exception):
            self._out.put(r)
            raise AssertionError("watch stream ended: %r" % (r,))
        self.responses.append(r)
        return r

    def collect_events(self, until, timeout=30):
        """Events (in order) up to and including the first one matching until(ev)."""
        deadline = time.monotonic() + timeout
        events = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("watch: condition not met within %ss; got %d events"
                                     % (timeout, len(events)))
            resp = self.next_response(left)
            for ev in resp.events:
                events.append(ev)
                if until(ev):
                    return events

    def close(self):
        self._reqs.put(None)
        self.call.cancel()
        self._thread.join(10)
