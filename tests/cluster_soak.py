"""Many seeded cluster runs with random nemesis mixes (make cluster-soak).

    /usr/bin/python3 tests/cluster_soak.py --runs 20 --target etcd [--start 1000]
    /usr/bin/python3 tests/cluster_soak.py --seed 1234 --nemesis kill_leader,pause  # replay

Seed S picks its own mix of 1-3 nemeses (unless --nemesis names them) and
its schedule.  Every failing seed is printed with its replay command; the
soak continues after a failure (each run is independent, and a list of all
failing seeds says more than the first) and exits 1 if any run failed.
"""

import argparse
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nemesis  # noqa: E402


def mix_for(seed):
    rng = random.Random(seed * 7919)
    return sorted(rng.sample(nemesis.NEMESES, rng.randint(1, 3)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default=os.environ.get("CAIRN_TEST_TARGET", "cairn"),
                    choices=("cairn", "etcd"))
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--start", type=int, default=1, help="first seed")
    ap.add_argument("--seed", type=int, help="replay exactly this seed (one run)")
    ap.add_argument("--nemesis", help="comma list instead of the seed's own mix ('none': "
                    "no faults); of: " + ",".join(nemesis.NEMESES))
    ap.add_argument("--sabotage", choices=("rollback", "stale-reads"),
                    help="break the cluster on purpose (the checker must fail)")
    ap.add_argument("--duration", type=float, default=nemesis.DEFAULT_DURATION)
    ap.add_argument("--members", type=int, default=3, choices=(3, 5))
    ap.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    args = ap.parse_args()
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.runs)
    failed = []
    base = tempfile.mkdtemp(prefix="cairn-soak-")
    for seed in seeds:
        if args.nemesis == "none":
            mix = []
        else:
            mix = args.nemesis.split(",") if args.nemesis else mix_for(seed)
        unknown = set(mix) - set(nemesis.NEMESES)
        if unknown:
            ap.error("unknown nemesis %s" % ",".join(sorted(unknown)))
        r = nemesis.run_seed(args.target, seed, mix, base, duration=args.duration,
                             sabotage=args.sabotage, size=args.members)
        if r.errors:
            failed.append(r)
            print("FAILED " + r.report(), flush=True)
        elif not args.keep:
            # A clean seed's data dirs go at once: each 3-member run writes
            # hundreds of MB, and a long soak would fill the disk.
            shutil.rmtree(os.path.join(base, "seed%d" % seed), ignore_errors=True)
    print("\n%d/%d runs failed" % (len(failed), len(seeds)))
    for r in failed:
        print("  seed %d: %s" % (r.seed, r.replay))
    if not args.keep and not failed:
        shutil.rmtree(base, ignore_errors=True)
    elif failed:
        print("data dirs and logs kept in %s" % base)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
