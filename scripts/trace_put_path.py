#!/usr/bin/env python3
"""trace_put_path.py: where the time of one put goes, from the trace files
(src/common/trace_points.h) of a cluster's members.

  trace_put_path.py LEADER_FILE [FOLLOWER_FILE ...]

For every proposal the leader traced from "propose" to "done" (a waiter on
the leader), prints the median and p90 time of each stage after "propose", in
the order the stages happen: the leader's stages, then those of the follower
whose answer came first (the one that made the entry commit), then the
leader's again. Meant for one client (one entry per log write); with more,
the stages of a batch are those of its last entry.
"""
import collections
import statistics
import sys

LEADER_EARLY = ["accept", "send_app", "persist_start", "write_app", "wrote_app", "persisted"]
FOLLOWER = ["recv_app", "step_app", "persist_start", "persisted", "send_resp", "write_resp", "wrote_resp"]
LEADER_LATE = ["recv_resp", "step_resp", "commit", "apply_start", "applied", "done"]


def load(path):
    """stage -> key -> first time (ns); and waiter id -> index ("accept")."""
    stages = collections.defaultdict(dict)
    index_of = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 4:
                continue
            stage, key, value, ns = parts[0], int(parts[1]), int(parts[2]), int(parts[3])
            if stage == "accept":
                index_of[key] = value
            stages[stage].setdefault(key, ns)
    return stages, index_of


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    leader, index_of = load(argv[1])
    followers = [load(p)[0] for p in argv[2:]]
    rows = collections.defaultdict(list)
    for wid, t0 in leader["propose"].items():
        if wid not in index_of or wid not in leader["done"] or wid not in leader["accept"]:
            continue
        idx = index_of[wid]

        def add(name, t):
            if t is not None:
                rows[name].append((t - t0) / 1000.0)

        for st in LEADER_EARLY:
            add("leader " + st, leader["accept"][wid] if st == "accept" else leader[st].get(idx))
        first = None
        for f in followers:
            t = f["send_resp"].get(idx)
            if t is not None and (first is None or t < first["send_resp"][idx]):
                first = f
        if first is not None:
            for st in FOLLOWER:
                add("follower " + st, first[st].get(idx))
        for st in LEADER_LATE:
            add("leader " + st, leader["done"][wid] if st == "done" else leader[st].get(idx))
    if not rows:
        print("no complete proposal in the trace", file=sys.stderr)
        return 1
    print(f"{'stage (us after propose)':28s} {'p50':>8s} {'p90':>8s} {'n':>7s}")
    for name in sorted(rows, key=lambda n: statistics.median(rows[n])):
        v = sorted(rows[name])
        print(f"{name:28s} {statistics.median(v):8.1f} {v[int(0.9 * (len(v) - 1))]:8.1f} {len(v):7d}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
