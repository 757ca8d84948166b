"""Start an N-member cluster (cairn or the real etcd) on loopback, with faults.

Every member advertises the port of a PeerProxy instead of its real peer
port, so the test can cut, blackhole or slow down the Raft traffic that
reaches a member without touching the member itself.  Members are
cluster.Server objects (the same registry, kill -9, log files and gRPC stubs
as the single-node suite), so a failing test never leaves a process behind.

Proxy placement, and what it means: the proxy of member B carries every TCP
connection another member opened to B's advertised peer URL, in both
directions.  With etcd's rafthttp, A reads B's messages on a stream A opened
to B, so blackholing B's proxy silences B (nothing B says reaches anyone,
nothing sent to B on those connections arrives) while B may still hear on
the streams it opened to the others.  A proxy cannot tell which member
opened a connection (all are from 127.0.0.1), so faults are per member.
"""

import asyncio
import os
import signal
import threading
import time
import uuid

import grpc
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

import cluster

DEFAULT_HEARTBEAT_MS = 100
DEFAULT_ELECTION_MS = 1000


class _ProxyLoop:
    """One asyncio loop in a daemon thread serves every proxy of the process."""

    _instance = None
    _lock = threading.Lock()

    @classmethod
    def get(cls):
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="peer-proxy-loop")
        self.thread.start()

    def run(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args):
        self.loop.call_soon_threadsafe(fn, *args)


class PeerProxy:
    """A TCP proxy in front of one member's real peer port.

    Modes:
      pass       forward both ways
      blackhole  keep every socket open, forward nothing either way (bytes
                 are read and discarded, so senders never block: a silent
                 network, not a full one)
      drop       reset every open connection and every new one
      delay      forward after `delay_ms` (per chunk; a chunk holds whatever
                 arrived meanwhile, so latency stays near delay_ms)
    """

    MODES = ("pass", "blackhole", "drop", "delay")

    def __init__(self, target_port):
        self._loop = _ProxyLoop.get()
        self.target_port = target_port
        self.mode = "pass"
        self.delay_ms = 0
        self._writers = set()   # every open transport end, to abort on drop/close
        self._server = self._loop.run(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]

    def __repr__(self):
        return "<PeerProxy :%d -> :%d %s>" % (self.port, self.target_port, self.mode)

    def set_mode(self, mode, delay_ms=0):
        assert mode in self.MODES, mode
        self.delay_ms = delay_ms
        self.mode = mode
        if mode == "drop":
            self._loop.call(self._abort_all)

    def close(self):
        self.mode = "drop"

        async def shutdown():
            self._server.close()
            self._abort_all()
            await self._server.wait_closed()
        try:
            self._loop.run(shutdown(), timeout=5)
        except Exception:
            pass

    # ------------------------------------------------------- loop side only
    def _abort_all(self):
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _handle(self, client_reader, client_writer):
        if self.mode == "drop":
            client_writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port), 3)
        except (OSError, asyncio.TimeoutError):
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, up_writer))
        pumps = [asyncio.ensure_future(self._pump(client_reader, up_writer)),
                 asyncio.ensure_future(self._pump(up_reader, client_writer))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in pumps:
                p.cancel()
            for w in (client_writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pump(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                mode = self.mode
                if mode == "blackhole":
                    continue
                if mode == "drop":
                    return
                if mode == "delay" and self.delay_ms > 0:
                    await asyncio.sleep(self.delay_ms / 1000.0)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            return


class Member(cluster.Server):
    """One cluster member: a cluster.Server whose flags make it part of a cluster."""

    def __init__(self, owner, index, kind, base_dir):
        super().__init__(kind, base_dir, name="m%d" % index)
        self.owner = owner
        self.index = index
        self.proxy = PeerProxy(self.peer_port)
        self.member_id = 0     # learnt from Status once it answers
        self.paused = False
        # Set when the member was added at runtime (etcdctl member add): the
        # ETCD_INITIAL_CLUSTER it printed; the member then starts "existing".
        self.join_cluster = None

    def __repr__(self):
        return "<Member %s %s pid=%s%s>" % (self.name, self.endpoint, self.pid,
                                           " PAUSED" if self.paused else "")

    @property
    def advertised_peer_url(self):
        scheme = "https" if self.owner.tls else "http"
        return "%s://127.0.0.1:%d" % (scheme, self.proxy.port)

    def command(self):
        o = self.owner
        if self.kind == "cairn":
            binary = cluster.cairn_binary()
            if not binary or not os.path.exists(binary):
                raise cluster.ServerError(
                    "cairn binary not found (CAIRN_BUILD=%r -> %r)"
                    % (os.environ.get("CAIRN_BUILD"), binary))
            cmd = [binary]
        else:
            cmd = [cluster.ETCD_BIN, "--logger", "zap", "--log-outputs", "stderr"]
        url = self.endpoint
        cmd += ["--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", "%s://127.0.0.1:%d" % ("https" if o.tls else "http", self.peer_port),
                "--initial-advertise-peer-urls", self.advertised_peer_url,
                "--initial-cluster", self.join_cluster or o.initial_cluster,
                "--initial-cluster-state", "existing" if self.join_cluster else "new",
                "--initial-cluster-token", o.token,
                "--heartbeat-interval", str(o.heartbeat_ms),
                "--election-timeout", str(o.election_ms)]
        if not any(a.startswith("--log-level") for a in o.extra_args):
            cmd += ["--log-level", "warn"]
        if self.kind == "cairn":
            cmd += cluster.small_wal_segments(o.extra_args)
        if o.tls:
            t = o.tls
            cmd += ["--cert-file", t.server.cert, "--key-file", t.server.key,
                    "--trusted-ca-file", t.ca.cert, "--client-cert-auth",
                    "--peer-cert-file", t.server.cert, "--peer-key-file", t.server.key,
                    "--peer-trusted-ca-file", t.ca.cert, "--peer-client-cert-auth"]
        return cmd + list(o.extra_args)

    def spawn(self):
        """Start the process without waiting: a member alone cannot elect a
        leader, so readiness is a cluster-wide question (Cluster.wait_leader)."""
        assert not self.alive(), "already running"
        cmd = self.command()
        self._log = open(self.log_path, "ab")
        self._log.write(("\n==== start #%d: %s\n" % (self.starts + 1, " ".join(cmd))).encode())
        self._log.flush()
        self.proc = cluster.subprocess.Popen(
            cmd, stdin=cluster.subprocess.DEVNULL, stdout=self._log,
            stderr=cluster.subprocess.STDOUT, cwd=self.base_dir, start_new_session=True)
        self.starts += 1
        self.paused = False
        cluster._LIVE.add(self)

    def start(self, timeout=cluster.READY_TIMEOUT):
        self.spawn()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill9()
            raise
        return self

    def kill9(self):
        super().kill9()
        self.paused = False

    def pause(self):
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self._signal(signal.SIGCONT)
        self.paused = False

    def status(self, timeout=1.0):
        """Maintenance.Status on a short-lived channel (never blocks past timeout)."""
        with cluster.make_channel(self.host_port) as ch:
            st = rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(),
                                                         timeout=timeout)
        self.member_id = st.header.member_id
        return st


def cluster_tls_files(tls):
    from tls_certs import ClientFiles
    return ClientFiles(tls.ca.cert, tls.client.cert, tls.client.key)


class Cluster:
    """N members of one kind on loopback, each behind its own PeerProxy.

    heartbeat_ms / election_ms / extra_args are passed to every member; they
    can be changed before start() (or before a restart) to try other timings.
    tls: None, or certificates (.ca, .server, .client, as tls_certs makes
    them) for https client and peer URLs with client and peer certificates
    required.
    """

    def __init__(self, kind, base_dir, size=3, heartbeat_ms=DEFAULT_HEARTBEAT_MS,
                 election_ms=DEFAULT_ELECTION_MS, extra_args=(), tls=None):
        assert kind in ("cairn", "etcd"), kind
        assert size >= 1
        self.kind = kind
        self.base_dir = str(base_dir)
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.extra_args = list(extra_args)
        self.tls = tls
        # Unique per run: two clusters never mistake each other's members.
        self.token = "cairn-faults-" + uuid.uuid4().hex[:12]
        self.members = [Member(self, i + 1, kind, os.path.join(self.base_dir, "m%d" % (i + 1)))
                        for i in range(size)]
        self.initial_cluster = ",".join("%s=%s" % (m.name, m.advertised_peer_url)
                                        for m in self.members)
        if tls:
            for m in self.members:
                m.client_tls = cluster_tls_files(tls)

    def __repr__(self):
        return "<Cluster %s %s>" % (self.kind, self.members)

    @property
    def quorum(self):
        return len(self.members) // 2 + 1

    # ----------------------------------------------------------- lifecycle
    def start(self, timeout=cluster.READY_TIMEOUT):
        for m in self.members:
            m.spawn()
        self.wait_all_ready(timeout)
        return self

    def wait_all_ready(self, timeout=cluster.READY_TIMEOUT):
        """Leader elected and every running member serving reads."""
        deadline = time.monotonic() + timeout
        self.wait_leader(timeout)
        for m in self.members:
            if m.alive() and not m.paused:
                m.wait_ready(max(1.0, deadline - time.monotonic()))
                m.status(timeout=2)

    def stop(self):
        """Kill every member and close every proxy (teardown; never raises)."""
        for m in self.members:
            try:
                m.kill9()
            except Exception:
                pass
            m.proxy.close()

    # ------------------------------------------------------------ queries
    def wait_leader(self, timeout=cluster.READY_TIMEOUT):
        """The member a quorum of members names as leader (bounded wait)."""
        deadline = time.monotonic() + timeout
        seen = {}
        while time.monotonic() < deadline:
            seen = {}
            for m in self.members:
                if not m.alive() or m.paused:
                    continue
                try:
                    st = m.status(timeout=1)
                except grpc.RpcError:
                    continue
                if st.leader:
                    seen.setdefault(st.leader, []).append(m.name)
            for leader_id, names in seen.items():
                if len(names) >= self.quorum:
                    lead = self.by_id(leader_id)
                    if lead is not None and lead.alive() and not lead.paused:
                        return lead
            time.sleep(0.1)
        raise cluster.ServerError("%s: no leader agreed by a quorum within %.0fs (seen %r)\n%s"
                                  % (self, timeout, seen, self.log_tails(1500)))

    def by_id(self, member_id):
        for m in self.members:
            if m.member_id == member_id:
                return m
        return None

    def followers(self, leader):
        return [m for m in self.members if m is not leader]

    # ------------------------------------------------------------- faults
    def kill9(self, member):
        member.kill9()

    def restart(self, member, timeout=cluster.READY_TIMEOUT):
        """Start a killed member again on the same data dir and wait until it serves."""
        if member.alive():
            member.kill9()
        member.start(timeout)

    def pause_for(self, member, seconds):
        member.pause()
        try:
            time.sleep(seconds)
        finally:
            member.resume()

    def kill_all(self):
        for m in self.members:
            m.kill9()

    def restart_all(self, timeout=cluster.READY_TIMEOUT):
        for m in self.members:
            if m.alive():
                m.kill9()
        for m in self.members:
            m.spawn()
        self.wait_all_ready(timeout)

    # ---------------------------------------------------------- reporting
    def log_tails(self, n=3000):
        return "\n".join("---- %s (%s)\n%s" % (m.name, m.log_path, m.log_tail(n))
                         for m in self.members)
