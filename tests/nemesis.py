"""Seeded fault runs: one seed -> one nemesis schedule over a workload, then the checker.

run_seed() starts a fresh cluster, the watchers and the workload, plays the
schedule in real time from the main thread, heals everything, collects the
final state and returns the checker's verdict.  The seed fixes every choice
(schedule, fault targets among leader/followers, fault lengths, client ops);
thread timing is real, so a replay reproduces the run's shape, not its exact
interleaving.

Nemeses (each heals itself before the next starts):
  kill_leader    kill -9 the leader, restart it on its data dir after a pause
  kill_follower  the same for a follower
  pause          SIGSTOP a member (leader or not) for a few seconds, then SIGCONT
  blackhole      blackhole a member's peer proxy for a few seconds
  delay          delay a member's peer traffic by 50-150 ms for a few seconds
  drop           reset a member's peer connections for a few seconds
  kill_all       kill -9 every member at once, restart them all
Membership nemeses (etcdctl, as an operator would; the member set is whole
again when each ends):
  replace_follower  member remove a follower (it stops by itself), wipe its
                    data dir, member add it back, start it "existing"
  replace_leader    the same for the leader
  learner           replace a follower, added back as a learner, then member
                    promote it once it is in sync
  move_leader       move-leader to a follower
Sabotage (for showing the checker is not blind; never in random mixes):
  stale-reads    every "get" is sent serializable but recorded as linearizable:
                 followers answer from their own, older, state (every peer
                 link is delayed by 20 ms for the run, so a follower learns
                 of a commit well after the leader answered it: on loopback
                 alone it may lag by less than a read takes)
  rollback       copy every data dir (members paused) early in the run; at the
                 end kill all and restart from the copies: acknowledged writes
                 after the copy are lost on every member
"""

import os
import random
import re
import shutil
import subprocess
import sys
import time

import cluster
import history
import history_check
from cluster_harness import Cluster

MEMBERSHIP = ("replace_follower", "replace_leader", "learner", "move_leader")
NEMESES = ("kill_leader", "kill_follower", "pause", "blackhole", "delay", "drop",
           "kill_all") + MEMBERSHIP
# A membership change is retried this long (etcd refuses one while a voter
# has been connected for less than 5 s: "unhealthy cluster").
MEMBERSHIP_TIMEOUT = 40.0
# A removed member must notice and stop within this long: etcd's does at
# once.  (Below the 7 s request timeout, which a stop that waits for the
# removed member's stuck requests would take.)
REMOVED_STOP_TIMEOUT = 6.0
DEFAULT_DURATION = 15.0


def replay_command(kind, seed, nemeses, duration, sabotage=None, size=3):
    return ("/usr/bin/python3 tests/cluster_soak.py --target %s --seed %d --nemesis %s "
            "--duration %g%s%s" % (kind, seed, ",".join(nemeses) or "none", duration,
                                   " --sabotage " + sabotage if sabotage else "",
                                   " --members %d" % size if size != 3 else ""))


def schedule(seed, nemeses, duration):
    """[(start offset s, nemesis, fault length s, target choice in [0,1))]: faults
    from ~2 s in, each followed by 2-4 s of quiet so the cluster recovers."""
    rng = random.Random(seed)
    out, t = [], rng.uniform(1.5, 3.0)
    while nemeses and t < duration - 3.0:
        length = rng.uniform(1.5, 3.5)
        out.append((t, rng.choice(nemeses), length, rng.random()))
        t += length + rng.uniform(2.0, 4.0)
    return out


class Nemesis:
    """Plays a schedule against a cluster; log lines say what happened when."""

    def __init__(self, cluster, seed, t0):
        self.c = cluster
        self.rng = random.Random(seed ^ 0x5eed)
        self.t0 = t0
        self.log = []
        self.problems = []   # misbehaviour seen by the nemesis itself (violations)

    def note(self, msg):
        self.log.append("%7.3f %s" % (time.monotonic() - self.t0, msg))

    def _target(self, choice, leader_bias=0.5):
        lead = self.c.wait_leader(15)
        if choice < leader_bias:
            return lead
        others = self.c.followers(lead)
        return others[int((choice - leader_bias) / (1 - leader_bias) * len(others)) % len(others)]

    def play(self, plan):
        for at, name, length, choice in plan:
            wait = self.t0 + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            getattr(self, name)(length, choice)
            self.note("leader: %s" % self.c.wait_leader(20).name)

    def heal(self):
        """Undo any fault left by an interrupted run (never raises)."""
        for m in self.c.members:
            m.proxy.set_mode("pass")
            if m.paused:
                m.resume()

    # ----------------------------------------------------------- nemeses
    def kill_leader(self, length, choice):
        self._kill(self.c.wait_leader(15), length, "leader")

    def kill_follower(self, length, choice):
        self._kill(self._target(choice, leader_bias=0.0), length, "follower")

    def _kill(self, m, length, role):
        self.note("kill -9 %s %s" % (role, m.name))
        self.c.kill9(m)
        time.sleep(length)
        self.c.restart(m)
        self.note("restarted %s" % m.name)

    def pause(self, length, choice):
        m = self._target(choice)
        self.note("SIGSTOP %s for %.1fs" % (m.name, length))
        self.c.pause_for(m, length)
        self.note("SIGCONT %s" % m.name)

    def _proxy_fault(self, mode, length, choice, delay_ms=0):
        m = self._target(choice)
        self.note("proxy of %s: %s%s for %.1fs" % (
            m.name, mode, " %dms" % delay_ms if delay_ms else "", length))
        m.proxy.set_mode(mode, delay_ms)
        try:
            time.sleep(length)
        finally:
            m.proxy.set_mode("pass")
        self.note("proxy of %s: pass" % m.name)

    def blackhole(self, length, choice):
        self._proxy_fault("blackhole", length, choice)

    def drop(self, length, choice):
        self._proxy_fault("drop", length, choice)

    def delay(self, length, choice):
        self._proxy_fault("delay", length, choice, delay_ms=self.rng.randint(50, 150))

    def kill_all(self, length, choice):
        self.note("kill -9 all")
        self.c.kill_all()
        time.sleep(min(length, 1.5))
        self.c.restart_all()
        self.note("all restarted")


    # ------------------------------------------------- membership nemeses
    def _ctl(self, *args):
        """etcdctl against every running member; (ok, output)."""
        live = [m for m in self.c.members if m.alive() and not m.paused]
        eps = ",".join(m.host_port for m in live)
        tls = cluster.tls_args_for(live[0].host_port) if live else []
        p = subprocess.run([cluster.ETCDCTL_BIN, "--endpoints", eps, "--command-timeout", "10s"] +
                           tls + list(args), env=cluster.etcdctl_env(), capture_output=True, text=True,
                           timeout=30)
        out = (p.stdout + p.stderr).strip()
        return p.returncode == 0, out

    def _ctl_until_ok(self, *args, done_if=None):
        """etcdctl again until it succeeds (bounded); the output.  A retry
        that fails with `done_if` in its error found the change made by an
        earlier try whose answer was lost: None is returned."""
        deadline = time.monotonic() + MEMBERSHIP_TIMEOUT
        errors = []
        while True:
            ok, out = self._ctl(*args)
            last = out.splitlines()[-1] if out else ""
            if ok or (errors and done_if and done_if in last):
                if errors:
                    self.note("  (%s: %d tries; %s)" % (" ".join(args[:2]), len(errors) + 1,
                                                        "; ".join(sorted(set(errors)))))
                return out if ok else None
            errors.append(last)
            if time.monotonic() > deadline:
                raise RuntimeError("etcdctl %s kept failing for %.0fs: %s"
                                   % (" ".join(args), MEMBERSHIP_TIMEOUT, out[-300:]))
            time.sleep(0.5)

    def _remove(self, m, role):
        mid = m.status(timeout=2).header.member_id
        self.note("member remove %s %s (%x)" % (role, m.name, mid))
        self._ctl_until_ok("member", "remove", "%x" % mid, done_if="member not found")
        deadline = time.monotonic() + REMOVED_STOP_TIMEOUT
        while m.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if m.alive():
            self.problems.append("[membership] %s still running %.0fs after its removal"
                                 % (m.name, REMOVED_STOP_TIMEOUT))
        else:
            self.note("%s stopped by itself (exit %s)" % (m.name, m.proc.returncode))
        m.kill9()
        shutil.rmtree(m.data_dir, ignore_errors=True)

    def _add_back(self, m, learner=False):
        added = self._ctl_until_ok("member", "add", m.name, "--peer-urls=" + m.advertised_peer_url,
                                   *(["--learner"] if learner else []),
                                   done_if="Peer URLs already exists")
        if added is not None:
            env = dict(line.split("=", 1) for line in added.splitlines() if line.startswith("ETCD_"))
            m.join_cluster = env["ETCD_INITIAL_CLUSTER"].strip('"')
            new_id = re.search(r"Member +([0-9a-f]+) added", added).group(1)  # (%16x: padded)
        else:
            # The add went through but its answer was lost: what it would
            # have printed, from the member list (id, status, name, peer URLs).
            rows = [line.split(", ") for line in self._ctl_until_ok("member", "list").splitlines()]
            new_id = next(r[0] for r in rows if r[3] == m.advertised_peer_url)
            m.join_cluster = ",".join("%s=%s" % (m.name if r[0] == new_id else r[2], r[3])
                                      for r in rows)
        self.note("member add %s%s: %s" % (m.name, " --learner" if learner else "", new_id))
        m.spawn()
        if learner:
            # Refused until the learner has caught up with the leader's log.
            self._ctl_until_ok("member", "promote", new_id)
            self.note("member promote %s" % new_id)
        m.wait_ready(cluster.READY_TIMEOUT)
        m.status(timeout=2)
        self.note("%s serves again as %s" % (m.name, new_id))

    def replace_follower(self, length, choice):
        m = self._target(choice, leader_bias=0.0)
        self._remove(m, "follower")
        time.sleep(min(length, 1.5))
        self._add_back(m)

    def replace_leader(self, length, choice):
        m = self.c.wait_leader(15)
        self._remove(m, "leader")
        time.sleep(min(length, 1.5))
        self._add_back(m)

    def learner(self, length, choice):
        m = self._target(choice, leader_bias=0.0)
        self._remove(m, "follower")
        time.sleep(min(length, 1.5))
        self._add_back(m, learner=True)

    def move_leader(self, length, choice):
        lead = self.c.wait_leader(15)
        to = self._target(choice, leader_bias=0.0)
        to_id = to.status(timeout=2).header.member_id
        self.note("move-leader %s -> %s" % (lead.name, to.name))
        out = self._ctl_until_ok("move-leader", "%x" % to_id)
        self.note("  " + out.splitlines()[-1])
        time.sleep(min(length, 1.0))


class Rollback:
    """The sabotage: snapshot every data dir now, restore them at the end."""

    def __init__(self, cluster):
        self.c = cluster
        self.copies = {}

    def snapshot(self):
        for m in self.c.members:
            m.pause()
        try:
            for m in self.c.members:
                dst = m.data_dir + ".rollback"
                shutil.copytree(m.data_dir, dst)
                self.copies[m] = dst
        finally:
            for m in self.c.members:
                m.resume()

    def restore(self):
        self.c.kill_all()
        for m, src in self.copies.items():
            shutil.rmtree(m.data_dir)
            shutil.copytree(src, m.data_dir)
        self.c.restart_all()


class RunResult:
    def __init__(self, seed, kind, nemeses, duration, sabotage, size):
        self.seed, self.kind, self.nemeses, self.duration = seed, kind, nemeses, duration
        self.sabotage, self.size = sabotage, size
        self.errors = []
        self.log = []
        self.summary = ""
        self.member_logs = ""    # tails of every member's log, kept when the run failed
        self.seconds = 0.0
        self.history = None

    @property
    def replay(self):
        return replay_command(self.kind, self.seed, self.nemeses, self.duration, self.sabotage,
                              self.size)

    def report(self):
        head = "seed %d (%s, nemesis %s, %.0fs): %s" % (
            self.seed, self.kind, ",".join(self.nemeses) or "none", self.duration,
            "%d violations" % len(self.errors) if self.errors else "ok")
        return "\n".join([head] + self.errors + ["nemesis log:"] + self.log +
                         [self.summary, self.member_logs, "replay: " + self.replay])


def run_seed(kind, seed, nemeses, base_dir, duration=DEFAULT_DURATION, clients=4,
             sabotage=None, size=3, out=sys.stdout, extra_args=(), tls=None):
    """One seeded run; returns a RunResult (errors == [] when the history checks out)."""
    result = RunResult(seed, kind, list(nemeses), duration, sabotage, size)
    print("cluster run: seed=%d kind=%s nemesis=%s duration=%gs\n  replay: %s"
          % (seed, kind, ",".join(nemeses) or "none", duration, result.replay),
          file=out, flush=True)
    started = time.monotonic()
    rng = random.Random(seed)
    plan = schedule(seed, nemeses, duration)
    c = Cluster(kind, os.path.join(str(base_dir), "seed%d" % seed), size=size,
                extra_args=extra_args, tls=tls)
    h = history.new_history()
    result.history = h
    watchers, workload, nem = [], None, None
    try:
        c.start()
        watchers = [history.Watcher(m.name, m.host_port) for m in c.members]
        h.watches = [w.log for w in watchers]
        for w in watchers:
            w.start()
        workload = history.Workload(c.members, h, seed, clients=clients,
                                    serializable_gets=sabotage == "stale-reads")
        nem = Nemesis(c, seed, time.monotonic())
        if sabotage == "stale-reads":
            for m in c.members:
                m.proxy.set_mode("delay", 20)
        workload.start()
        rollback = Rollback(c) if sabotage == "rollback" else None
        if rollback:
            time.sleep(2.0)
            nem.note("sabotage: snapshot of every data dir")
            rollback.snapshot()
        nem.play(plan)
        time.sleep(max(0.0, nem.t0 + duration - time.monotonic()))
        workload.stop()
        nem.heal()
        c.wait_all_ready()
        if rollback:
            nem.note("sabotage: kill all, restore the snapshot")
            rollback.restore()
        nem.note("workload stopped; collecting")
        history.collect_final(c, h, watchers, rng)
        for w in watchers:
            w.stop()
        result.errors = nem.problems + history_check.check(h)
    except Exception as e:   # a harness failure is a failed run too
        result.errors = (list(nem.problems) if nem else []) + \
            ["run aborted: %s: %s" % (type(e).__name__, e)]
    finally:
        if result.errors:
            result.member_logs = "member logs (%s):\n%s" % (c.base_dir, c.log_tails(1500))
        if nem:
            nem.heal()
            result.log = nem.log
        for w in watchers:
            w.stop()
        if workload:
            try:
                workload.stop()
            except RuntimeError as e:
                result.errors.append(str(e))
            result.summary = history.summary(h, workload)
        c.stop()
    result.seconds = time.monotonic() - started
    print("  %s in %.1fs\n%s\n%s" % ("ok" if not result.errors else "FAILED", result.seconds,
                                     "\n".join(result.log), result.summary), file=out, flush=True)
    return result
