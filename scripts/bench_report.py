#!/usr/bin/env python3
"""Turns the JSON files of scripts/bench-vs-etcd.sh into one side-by-side table
(etcd, cairn, cairn/etcd) and the gnuplot input of the latency/throughput plot.

    bench_report.py table RESULTS_DIR            # markdown table on stdout
    bench_report.py ceiling RESULTS_DIR          # cairn and etcd against the ceiling
    bench_report.py plot RESULTS_DIR OUT.png     # writes RESULTS_DIR/plot.gp

RESULTS_DIR holds <run>.<server>.json (cairn-bench --json output, server is
"etcd", "cairn" or "ceiling", cmd/cairn-ceiling: Put and Range from memory) and resources.<server>.json (written by the shell script:
rss_kb, disk_kb, restart_seconds, ...). Only the standard library is used.
"""

import json
import os
import sys

SERVERS = ("etcd", "cairn")

# (run name, label) in table order; runs missing from the directory are skipped.
RUNS = [
    ("put-c1", "put, 1 client, 256 B values"),
    ("put-c64", "put, 64 clients / 8 conns, 256 B values"),
    ("range-l-c64", "range linearizable, 64 clients"),
    ("range-s-c64", "range serializable, 64 clients"),
    ("mixed-c64", "mixed 95% range / 5% put, 64 clients"),
    ("txn-put-c64", "txn-put (CAS), 64 clients"),
    ("lease-keepalive-c64", "lease keep-alive, 64 clients"),
    ("watch", "watch: 1000 watchers, writer 1000 puts/s"),
    ("load", "load (put, 64 clients, 256 B values)"),
]

SWEEPS = [("put", "put (256 B values)"), ("range-l", "range (linearizable)")]
SWEEP_CLIENTS = (1, 4, 16, 64)

# figure -> True when a higher value is better.
HIGHER_IS_BETTER = {"throughput": True, "put rate achieved": True}
# Figures that are counts to compare by eye, not better or worse.
NEUTRAL = {"events received", "events expected"}


def server_cpu_seconds(results, name, server):
    path = os.path.join(results, "%s.%s.cpu" % (name, server))
    try:
        with open(path) as f:
            return float(f.read().strip())
    except (OSError, ValueError):
        return None


def load(results, name, server):
    path = os.path.join(results, "%s.%s.json" % (name, server))
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read().strip()
    try:
        return json.loads(text.splitlines()[-1]) if text else None
    except (ValueError, IndexError):
        return None


def fmt(value):
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return "{:,}".format(value)
    if abs(value) >= 100:
        return "{:,.0f}".format(value)
    if abs(value) >= 10:
        return "%.1f" % value
    return "%.2f" % value


def ratio(etcd, cairn):
    if not isinstance(etcd, (int, float)) or not isinstance(cairn, (int, float)) \
            or isinstance(etcd, bool) or etcd == 0:
        return ""
    return "%.2f" % (cairn / etcd)


def better(figure, etcd, cairn):
    """Which side is better, or '~' within 5%. Empty for non-numeric figures."""
    if not isinstance(etcd, (int, float)) or not isinstance(cairn, (int, float)) \
            or isinstance(etcd, bool) or etcd <= 0 or cairn <= 0:
        return ""
    if figure in NEUTRAL:
        return ""
    r = cairn / etcd
    if 0.95 <= r <= 1.05:
        return "~"
    higher = HIGHER_IS_BETTER.get(figure.split(" (")[0], False)
    return "cairn" if (r > 1) == higher else "etcd"


def run_figures(name, report, cpu_seconds=None):
    """[(figure, value)] of one cairn-bench report (+ the server's CPU)."""
    if report is None:
        return []
    lat = report.get("latency_ms", {})
    unit = report.get("unit", "ops")
    # For watch, the latency is event delivery (put sent -> event received).
    prefix = "delivery " if name == "watch" else ""
    figures = [("throughput (%s/s)" % unit, report.get("throughput")),
               (prefix + "p50 (ms)", lat.get("p50")),
               (prefix + "p99 (ms)", lat.get("p99")),
               (prefix + "p99.9 (ms)", lat.get("p99.9")),
               (prefix + "max (ms)", lat.get("max")),
               ("errors", report.get("errors"))]
    ok = report.get("ok") or 0
    if cpu_seconds is not None and ok > 0:
        figures.append(("server CPU per %s (us)" % unit.rstrip("s"), cpu_seconds * 1e6 / ok))
    if name == "watch":
        extra = report.get("extra", {})
        put = report.get("kinds", {}).get("put", {})
        figures += [("put rate achieved (puts/s)", extra.get("put_rate_achieved")),
                    ("put p99 (ms)", put.get("p99")),
                    ("events received", extra.get("events_received")),
                    ("events expected", extra.get("events_expected")),
                    ("exactly once", extra.get("exactly_once"))]
    if name.startswith("txn-put"):
        figures.append(("CAS conflicts", report.get("extra", {}).get("cas_conflicts")))
    return figures


def resource_figures(res):
    if res is None:
        return []
    return [("keys loaded", res.get("keys")),
            ("RSS after load (MiB)", kib_to_mib(res.get("rss_kb"))),
            ("peak RSS during load (MiB)", kib_to_mib(res.get("hwm_kb"))),
            ("on-disk size (MiB)", kib_to_mib(res.get("disk_kb"))),
            ("restart until Range answers (s)", res.get("restart_seconds")),
            ("RSS after restart (MiB)", kib_to_mib(res.get("restart_rss_kb")))]


def kib_to_mib(v):
    return None if v is None else v / 1024.0


def table(results):
    rows = []
    for name, label in RUNS:
        reports = {s: load(results, name, s) for s in SERVERS}
        if not any(reports.values()):
            continue
        cpu = {s: server_cpu_seconds(results, name, s) for s in SERVERS}
        per_server = {s: dict(run_figures(name, reports[s], cpu[s])) for s in SERVERS}
        figures = []
        for s in SERVERS:
            for f, _ in run_figures(name, reports[s], cpu[s]):
                if f not in figures:
                    figures.append(f)
        for figure in figures:
            rows.append((label, figure, per_server["etcd"].get(figure),
                         per_server["cairn"].get(figure)))
    res = {}
    for s in SERVERS:
        path = os.path.join(results, "resources.%s.json" % s)
        if os.path.exists(path):
            with open(path) as f:
                res[s] = json.load(f)
    if res:
        per_server = {s: dict(resource_figures(res.get(s))) for s in SERVERS}
        keys = res.get("etcd", res.get("cairn", {})).get("keys")
        label = "%s keys of 256 B" % fmt(keys) if keys else "data set"
        for figure, _ in resource_figures(res.get("etcd") or res.get("cairn")):
            if figure == "keys loaded":
                continue
            rows.append((label, figure, per_server["etcd"].get(figure),
                         per_server["cairn"].get(figure)))

    out = ["| workload | figure | etcd | cairn | cairn/etcd | better |",
           "|---|---|---:|---:|---:|:---:|"]
    last = None
    for label, figure, e, c in rows:
        shown = label if label != last else ""
        last = label
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            shown, figure, fmt(e), fmt(c), ratio(e, c), better(figure, e, c)))
    return "\n".join(out)


def plot(results, png):
    """Writes <server>-<sweep>.dat and plot.gp; returns the .gp path."""
    panels = []
    for sweep, title in SWEEPS:
        series = []
        for s in SERVERS:
            path = os.path.join(results, "%s.%s.dat" % (sweep, s))
            lines = []
            for c in SWEEP_CLIENTS:
                r = load(results, "%s-c%d" % (sweep, c), s)
                if r is None:
                    continue
                lat = r["latency_ms"]
                lines.append("%d %.1f %.3f %.3f" % (c, r["throughput"], lat["p50"], lat["p99"]))
            with open(path, "w") as f:
                f.write("# clients throughput_ops p50_ms p99_ms\n" + "\n".join(lines) + "\n")
            series.append((s, path))
        panels.append((title, series))

    gp = [
        'set terminal pngcairo size 1400,560 font "DejaVu Sans,11"',
        'set output "%s"' % png,
        'set multiplot layout 1,%d title "etcd vs cairn: latency against throughput '
        '(points: 1, 4, 16, 64 clients)"' % len(panels),
        "set logscale y",
        "set grid",
        "set key top left",
        'set xlabel "throughput (ops/s)"',
        'set ylabel "latency (ms, log scale)"',
        "set xrange [0:*]",
    ]
    colors = {"etcd": "#1f77b4", "cairn": "#d62728"}
    for title, series in panels:
        gp.append('set title "%s"' % title)
        parts = []
        for s, path in series:
            parts.append('"%s" using 2:3 with linespoints lw 2 pt 7 lc rgb "%s" title "%s p50"'
                         % (path, colors[s], s))
            parts.append('"%s" using 2:4 with linespoints lw 2 dt 2 pt 5 lc rgb "%s" title "%s p99"'
                         % (path, colors[s], s))
            parts.append('"%s" using 2:4:(sprintf("%%d", $1)) with labels offset 0,0.8 '
                         'font ",9" tc rgb "%s" notitle' % (path, colors[s]))
        gp.append("plot " + ", \\\n     ".join(parts))
    gp.append("unset multiplot")
    path = os.path.join(results, "plot.gp")
    with open(path, "w") as f:
        f.write("\n".join(gp) + "\n")
    return path


# The runs also made against cmd/cairn-ceiling (the ceiling answers every
# range from memory, whatever its consistency).
CEILING_RUNS = [
    ("put-c1", "put, 1 client"),
    ("put-c64", "put, 64 clients / 8 conns"),
    ("range-l-c64", "range linearizable, 64 clients"),
    ("range-s-c64", "range serializable, 64 clients"),
]


def ceiling_table(results):
    """cairn and etcd as a fraction of the do-nothing server's throughput, and
    the server CPU per op of each: what the RPC stack alone costs."""
    head = ("| workload | ceiling ops/s | cairn ops/s | etcd ops/s | cairn/ceiling | etcd/ceiling "
            "| ceiling CPU/op (us) | cairn CPU/op (us) | etcd CPU/op (us) |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, label in CEILING_RUNS:
        reports = {srv: load(results, name, srv) for srv in ("ceiling", "cairn", "etcd")}
        if reports["ceiling"] is None:
            continue
        ops = {srv: (r or {}).get("throughput") for srv, r in reports.items()}
        cpu = {}
        for srv, r in reports.items():
            secs = server_cpu_seconds(results, name, srv)
            ok = (r or {}).get("ok") or 0
            cpu[srv] = secs * 1e6 / ok if secs is not None and ok > 0 else None
        frac = {srv: (ops[srv] / ops["ceiling"] if ops[srv] and ops["ceiling"] else None)
                for srv in ("cairn", "etcd")}
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, fmt(ops["ceiling"]), fmt(ops["cairn"]), fmt(ops["etcd"]),
            "%.2f" % frac["cairn"] if frac["cairn"] is not None else "",
            "%.2f" % frac["etcd"] if frac["etcd"] is not None else "",
            fmt(cpu["ceiling"]), fmt(cpu["cairn"]), fmt(cpu["etcd"])))
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv):
    if len(argv) >= 3 and argv[1] == "table":
        print(table(argv[2]))
        return 0
    if len(argv) >= 3 and argv[1] == "ceiling":
        print(ceiling_table(argv[2]))
        return 0
    if len(argv) >= 4 and argv[1] == "plot":
        print(plot(argv[2], argv[3]))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
