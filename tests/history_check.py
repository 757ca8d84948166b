"""Check a recorded cluster history (history_model.History) for consistency.

check(history) returns a list of human-readable violations ([] = correct).
The ground truth is history.final.events, the whole revision history read at
the end; every check compares what clients and watchers were told against
it, and it against what every member holds.

Definitions (pos = the revision an acknowledged op is placed at):
  * a write that made a revision (put, successful CAS, lease put, delete that
    deleted something) has pos = its revision, and must be found there;
  * any other acknowledged linearizable op (get, failed CAS, delete of
    nothing, lease revoke) has pos = its response header revision: the store
    revision it observed;
  * a write with an unknown outcome that is found in the final history has
    pos = the revision it was found at (it constrains only what came before).
Real-time order: if op A completed before op B was invoked, pos(A) <= pos(B),
and pos(A) < pos(B) if B made a revision.  Serializable gets are exempt from
real-time order (they may be stale) but must match the history at their
header revision.
"""

import bisect
from collections import Counter, defaultdict

from history_model import FAIL, OK, UNKNOWN, VALUE_WRITES

MAX_REPORTS_PER_CHECK = 5   # a broken run reports a few examples per check, not thousands


class Replay:
    """The final history as per-key timelines: state_at(key, revision) -> KV or None."""

    def __init__(self, events):
        self.timeline = defaultdict(lambda: ([], []))   # key -> (revisions, states)
        for rev in sorted(events):
            for ev in events[rev]:
                revs, states = self.timeline[ev.key]
                revs.append(rev)
                states.append(None if ev.kind == "DELETE" else
                              (ev.value, rev, ev.create_revision, ev.version, ev.lease))

    def state_at(self, key, revision):
        if key not in self.timeline:
            return None
        revs, states = self.timeline[key]
        i = bisect.bisect_right(revs, revision)
        return states[i - 1] if i else None

    def last_change(self, key, revision):
        """Revision of the last event on key at or before revision (0: none)."""
        if key not in self.timeline:
            return 0
        revs, _ = self.timeline[key]
        i = bisect.bisect_right(revs, revision)
        return revs[i - 1] if i else 0

    def all_at(self, revision):
        out = {}
        for k in self.timeline:
            s = self.state_at(k, revision)
            if s is not None:
                out[k] = s
        return out


def _kv(kv):
    return None if kv is None else "%s@mod%d" % (kv[0].decode(errors="replace"), kv[1])


class Checker:
    def __init__(self, history):
        self.h = history
        self.f = history.final
        self.replay = Replay(self.f.events)
        self.errors = []
        self._counts = Counter()
        self.pos = {}            # op id -> (pos, makes_revision) for the real-time check

    def report(self, check, message):
        self._counts[check] += 1
        if self._counts[check] <= MAX_REPORTS_PER_CHECK:
            self.errors.append("[%s] %s" % (check, message))
        elif self._counts[check] == MAX_REPORTS_PER_CHECK + 1:
            self.errors.append("[%s] ... more violations of this kind not shown" % check)

    def run(self):
        for p in self.f.problems:
            self.report("collect", p)
        self.check_final_history()
        self.check_writes()
        self.check_reads()
        self.check_cas()
        self.check_real_time()
        self.check_leases()
        self.check_watches()
        self.check_members()
        return self.errors

    # ------------------------------------------------------ final history
    def check_final_history(self):
        """Revisions 2..final all present; mod/create/version consistent."""
        f = self.f
        revs = sorted(f.events)
        missing = sorted(set(range(2, f.revision + 1)) - set(revs))
        if missing:
            self.report("final", "revisions %s missing from the final history (1..%d)"
                        % (_ranges(missing), f.revision))
        beyond = [r for r in revs if r > f.revision or r < 2]
        if beyond:
            self.report("final", "final history has revisions %s outside 2..%d"
                        % (_ranges(beyond), f.revision))
        for rev in revs:
            for ev in f.events[rev]:
                prev = self.replay.state_at(ev.key, rev - 1)
                if ev.kind == "PUT":
                    want_create = prev[2] if prev else rev
                    want_version = prev[3] + 1 if prev else 1
                    if (ev.create_revision, ev.version) != (want_create, want_version):
                        self.report("final", "revision %d: %s has create_revision %d version %d, "
                                    "its earlier history says %d and %d"
                                    % (rev, ev.describe(), ev.create_revision, ev.version,
                                       want_create, want_version))
                elif prev is None:
                    self.report("final", "revision %d deletes %s, which did not exist"
                                % (rev, ev.key.decode(errors="replace")))

    # ------------------------------------------------------------- writes
    def check_writes(self):
        """Acked writes at their revision; no phantom, no duplicate, at most once."""
        by_value = defaultdict(list)   # value -> [(revision, event)]
        for rev, evs in self.f.events.items():
            for ev in evs:
                if ev.kind == "PUT":
                    by_value[ev.value].append((rev, ev))
        writes = {}
        for op in self.h.ops:
            if op.kind in VALUE_WRITES:
                writes[op.value] = op
        for value, found in sorted(by_value.items(), key=lambda kv: kv[1][0][0]):
            if len(found) > 1:
                self.report("duplicate", "value %r written once but applied at revisions %s"
                            % (value, [r for r, _ in found]))
            op = writes.get(value)
            if op is None:
                self.report("phantom", "revision %d holds %s, a value no client wrote"
                            % (found[0][0], found[0][1].describe()))
                continue
            rev, ev = found[0]
            if ev.key != op.key:
                self.report("phantom", "revision %d holds %s but %s wrote that value to another key"
                            % (rev, ev.describe(), op.describe()))
            if op.status == FAIL:
                self.report("phantom", "revision %d holds %s, written by %s which failed definitely"
                            % (rev, ev.describe(), op.describe()))
            elif op.kind == "cas" and op.status == OK and not op.succeeded:
                self.report("phantom", "revision %d holds %s, written by %s whose compare failed"
                            % (rev, ev.describe(), op.describe()))
            elif op.kind == "lease_put" and ev.lease != op.lease:
                self.report("lost", "revision %d holds %s with lease %x, %s asked for lease %x"
                            % (rev, ev.describe(), ev.lease, op.describe(), op.lease))
            if op.status == UNKNOWN:
                self.pos[op.id] = (rev, True)
        for op in self.h.ops:
            if not op.makes_revision():
                continue
            self.pos[op.id] = (op.revision, True)
            evs = self.f.events.get(op.revision, [])
            if op.kind == "delete":
                hit = [ev for ev in evs if ev.kind == "DELETE" and ev.key == op.key]
            else:
                hit = [ev for ev in evs if ev.kind == "PUT" and ev.key == op.key
                       and ev.value == op.value]
            if not hit:
                self.report("lost", "acknowledged %s is not at revision %d, which holds [%s]"
                            % (op.describe(), op.revision,
                               ", ".join(e.describe() for e in evs) or "nothing"))
        self._check_deletes()

    def _check_deletes(self):
        """Every DELETE event is explained: an acked delete at that revision, an
        unknown delete of that key, or the end of a lease key."""
        acked = {(op.key, op.revision) for op in self.h.ops if op.kind == "delete"
                 and op.makes_revision()}
        unknown = Counter(op.key for op in self.h.ops if op.kind == "delete"
                          and op.status == UNKNOWN)
        unexplained = Counter()
        for rev in sorted(self.f.events):
            for ev in self.f.events[rev]:
                if ev.kind != "DELETE" or (ev.key, rev) in acked:
                    continue
                prev = self.replay.state_at(ev.key, rev - 1)
                if prev is not None and prev[4] != 0:
                    continue   # a leased key: its lease was revoked or expired
                unexplained[ev.key] += 1
                if unexplained[ev.key] > unknown[ev.key]:
                    self.report("phantom", "revision %d deletes %s, but no client delete "
                                "explains it" % (rev, ev.key.decode(errors="replace")))

    # -------------------------------------------------------------- reads
    def check_reads(self):
        """Every acked read matches the history at its header revision, and a
        linearizable read sees every write acknowledged before it began."""
        last_acked = defaultdict(list)   # key -> sorted [(complete, revision)] of acked writes
        for op in self.h.ops:
            if op.makes_revision():
                last_acked[op.key].append((op.complete, op.revision))
        prefix_max = {}
        for key, lst in last_acked.items():
            lst.sort()
            m, out = 0, []
            for _, rev in lst:
                m = max(m, rev)
                out.append(m)
            prefix_max[key] = ([c for c, _ in lst], out)
        for op in self.h.ops:
            if op.kind not in ("get", "sget") or op.status != OK:
                continue
            if op.revision > self.f.revision:
                self.report("read", "%s answered at revision %d, beyond the final revision %d"
                            % (op.describe(), op.revision, self.f.revision))
                continue
            want = self.replay.state_at(op.key, op.revision)
            if op.read != want:
                self.report("read", "%s returned %s but the history has %s at revision %d"
                            % (op.describe(), _kv(op.read), _kv(want), op.revision))
            if op.kind == "get":
                self.pos[op.id] = (op.revision, False)
                completes, maxes = prefix_max.get(op.key, ([], []))
                i = bisect.bisect_left(completes, op.invoke)
                if i:
                    must_see = maxes[i - 1]
                    seen = op.read[1] if op.read else self.replay.last_change(op.key, op.revision)
                    if seen < must_see:
                        self.report("stale-read", "%s returned %s, but a write of that key at "
                                    "revision %d was acknowledged before it began"
                                    % (op.describe(), _kv(op.read), must_see))

    # ---------------------------------------------------------------- CAS
    def _compare_holds(self, op, revision):
        state = self.replay.state_at(op.key, revision)
        what, operand = op.compare
        if what == "mod":
            return (state[1] if state else 0) == operand
        return state is not None and state[0] == operand

    def check_cas(self):
        """A successful CAS's compare held at the revision before its own; a
        failed one's did not at its header revision."""
        for op in self.h.ops:
            if op.kind != "cas" or op.compare is None:
                continue
            if op.status == OK and op.succeeded:
                if not self._compare_holds(op, op.revision - 1):
                    self.report("cas", "%s succeeded but at revision %d the key was %s"
                                % (op.describe(), op.revision - 1,
                                   _kv(self.replay.state_at(op.key, op.revision - 1))))
            elif op.status == OK:
                self.pos[op.id] = (op.revision, False)
                if self._compare_holds(op, op.revision):
                    self.report("cas", "%s failed but its compare held at revision %d (key %s)"
                                % (op.describe(), op.revision,
                                   _kv(self.replay.state_at(op.key, op.revision))))
                want = self.replay.state_at(op.key, op.revision)
                if op.read != want:
                    self.report("read", "%s failure branch read %s but the history has %s"
                                % (op.describe(), _kv(op.read), _kv(want)))
            elif op.status == UNKNOWN and op.id in self.pos:
                rev = self.pos[op.id][0]
                if not self._compare_holds(op, rev - 1):
                    self.report("cas", "%s (unknown outcome) applied at revision %d although "
                                "its compare was false there" % (op.describe(), rev))

    # ---------------------------------------------------------- real time
    def check_real_time(self):
        for op in self.h.ops:
            if op.status != OK or op.id in self.pos:
                continue
            if op.kind in ("delete", "lease_revoke"):   # acked, made no revision of its own
                self.pos[op.id] = (op.revision, False)
        by_id = {op.id: op for op in self.h.ops}
        done = sorted((by_id[i].complete, p, i) for i, (p, _) in self.pos.items()
                      if by_id[i].status == OK)
        completes = [c for c, _, _ in done]
        best, best_op = [], []
        m, mo = 0, None
        for _, p, i in done:
            if p > m:
                m, mo = p, i
            best.append(m)
            best_op.append(mo)
        for i, (p, makes) in sorted(self.pos.items()):
            op = by_id[i]
            k = bisect.bisect_left(completes, op.invoke)
            if not k:
                continue
            before, before_id = best[k - 1], best_op[k - 1]
            if p < before or (makes and p == before):
                self.report("real-time", "%s is at revision %d, but %s completed before it was "
                            "invoked and is at revision %d"
                            % (op.describe(), p, by_id[before_id].describe(), before))

    # ------------------------------------------------------------- leases
    def check_leases(self):
        prefix = self.h.lease_prefix
        for lease in self.h.leases:
            if lease.alive_at_end:
                self.report("lease", "lease %x (TTL %ds) still alive at the end"
                            % (lease.id, lease.ttl))
            if lease.revoke == OK:
                for key in lease.keys:
                    s = self.replay.state_at(key, lease.revoke_revision)
                    if s is not None and s[4] == lease.id:
                        self.report("lease", "lease %x revoked at revision %d but %s still "
                                    "attached there" % (lease.id, lease.revoke_revision,
                                                        key.decode(errors="replace")))
        for key, kv in sorted(self.replay.all_at(self.f.revision).items()):
            if key.startswith(prefix) or kv[4] != 0:
                self.report("lease", "%s (lease %x) survives at the end although its lease "
                            "was revoked or expired" % (key.decode(errors="replace"), kv[4]))

    # ------------------------------------------------------------ watches
    def check_watches(self):
        for w in self.h.watches:
            self._check_watch(w)

    def _check_watch(self, w):
        name = "watcher on %s" % w.member
        last = 0
        seen = {}        # revision -> index of the response it came in
        for start, before in w.resumes:
            if start > before + 1:
                self.report("watch", "%s resumed from revision %d after seeing %d: a gap"
                            % (name, start, before))
        for idx, resp in enumerate(w.responses):
            revs_here = []
            for ev in resp.events:
                if not revs_here or revs_here[-1] != ev.revision:
                    revs_here.append(ev.revision)
            for rev in revs_here:
                got = [ev for ev in resp.events if ev.revision == rev]
                want = self.f.events.get(rev, [])
                if rev in seen:
                    first_idx, first = seen[rev]
                    whole = [e.body() for e in want]
                    kind = "delivered twice" if first == whole else "split over two responses"
                    self.report("watch", "%s: revision %d %s (responses %d and %d)"
                                % (name, rev, kind, first_idx, idx))
                    continue
                if rev < last:
                    self.report("watch", "%s: revision %d after %d (out of order)"
                                % (name, rev, last))
                seen[rev] = (idx, [e.body() for e in got])
                last = max(last, rev)
                if [e.body() for e in got] != [e.body() for e in want]:
                    self.report("watch", "%s: revision %d was [%s], the history has [%s]"
                                % (name, rev, ", ".join(e.describe() for e in got),
                                   ", ".join(e.describe() for e in want)))
                for ev in got:
                    prev = self.replay.state_at(ev.key, rev - 1)
                    if ev.prev != prev:
                        self.report("watch", "%s: revision %d %s has prev_kv %s, history: %s"
                                    % (name, rev, ev.describe(), _kv(ev.prev), _kv(prev)))
        missing = sorted(r for r in self.f.events if r <= last and r not in seen)
        if missing:
            self.report("watch", "%s never delivered revisions %s (gap)" % (name, _ranges(missing)))
        if last < self.f.revision and self.f.revision > 1:
            self.report("watch", "%s stopped at revision %d, final is %d"
                        % (name, last, self.f.revision))

    # ------------------------------------------------------------ members
    def check_members(self):
        want = self.replay.all_at(self.f.revision)
        for member, state in sorted(self.f.states.items()):
            if state != want:
                diff = sorted(k for k in set(state) | set(want) if state.get(k) != want.get(k))
                k = diff[0]
                self.report("member", "%s at revision %d differs from the history on %d keys, "
                            "e.g. %s: %s vs %s" % (member, self.f.revision, len(diff),
                                                   k.decode(errors="replace"),
                                                   _kv(state.get(k)), _kv(want.get(k))))
        for member, rev, state in self.f.samples:
            want = self.replay.all_at(rev)
            if state != want:
                self.report("member", "%s Range at revision %d differs from the history"
                            % (member, rev))
        hashes = {m: h for m, h in self.f.hashes.items()}
        if len(set(hashes.values())) > 1:
            self.report("hashkv", "HashKV differs between members: %s" % ", ".join(
                "%s rev=%d hash=%d compact=%d" % ((m,) + h) for m, h in sorted(hashes.items())))


def _ranges(revs):
    """[3,4,5,9] -> '3-5,9' (messages stay short for long gaps)."""
    out, start, prev = [], None, None
    for r in revs:
        if start is None:
            start = prev = r
        elif r == prev + 1:
            prev = r
        else:
            out.append("%d" % start if start == prev else "%d-%d" % (start, prev))
            start = prev = r
    if start is not None:
        out.append("%d" % start if start == prev else "%d-%d" % (start, prev))
    return ",".join(out)


def check(history):
    """All violations found in history, [] when it is consistent."""
    return Checker(history).run()
