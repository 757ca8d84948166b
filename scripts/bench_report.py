#!/usr/bin/env python3
"""Turns the JSON files of scripts/bench-vs-etcd.sh into one side-by-side table
(etcd, cairn, cairn/etcd) and the gnuplot input of the latency/throughput plot.

    bench_report.py table RESULTS_DIR            # markdown table on stdout
    bench_report.py ceiling RESULTS_DIR          # cairn and etcd against the ceiling
    bench_report.py plot RESULTS_DIR OUT.png     # writes RESULTS_DIR/plot.gp
    bench_report.py scale RESULTS_DIR [--img-dir DIR]
        # scripts/bench-scale.sh's curves: markdown tables on stdout, and
        # DIR/scale-keys.png and DIR/scale-watchers.png drawn with gnuplot
        # (DIR: docs/img; the .dat and .gp files go to RESULTS_DIR)

RESULTS_DIR holds <run>.<server>.json (cairn-bench --json output, server is
"etcd", "cairn" or "ceiling", cmd/cairn-ceiling: Put and Range from memory) and resources.<server>.json (written by the shell script:
rss_kb, disk_kb, restart_seconds, ...) and resources-watchers.<server>.json (watchers, streams,
rss_idle_kb, rss_held_kb, rss_max_kb: RSS per watcher). For `scale` the runs are load-nN,
put-nN, range-l-nN, range-s-nN (N keys) and watch-wW (W watchers), and
resources-nN.<server>.json has rss_kb, hwm_kb, disk_kb, ... after the load of
N keys. Only the standard library is used (and gnuplot for the PNGs).
"""

import json
import os
import re
import subprocess
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
    ("watch-max", "watch: 1000 watchers, writer as fast as it can (1024 puts in flight)"),
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
    prefix = "delivery " if name.startswith("watch") else ""
    figures = [("throughput (%s/s)" % unit, report.get("throughput")),
               (prefix + "p50 (ms)", lat.get("p50")),
               (prefix + "p99 (ms)", lat.get("p99")),
               (prefix + "p99.9 (ms)", lat.get("p99.9")),
               (prefix + "max (ms)", lat.get("max")),
               ("errors", report.get("errors"))]
    ok = report.get("ok") or 0
    if cpu_seconds is not None and ok > 0:
        figures.append(("server CPU per %s (us)" % unit.rstrip("s"), cpu_seconds * 1e6 / ok))
    if name.startswith("watch"):
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


def watcher_memory_figures(res):
    """RSS per watcher (bytes): held with every watcher in place, and at most
    during the run, each less the idle RSS; from resources-watchers.*.json."""
    if res is None:
        return []
    w, idle = res.get("watchers"), res.get("rss_idle_kb")

    def per_watcher(kb):
        if kb is None or idle is None or not w:
            return None
        return max(0, kb - idle) * 1024.0 / w
    return [("idle RSS (MiB)", kib_to_mib(idle)),
            ("RSS per watcher, held (B)", per_watcher(res.get("rss_held_kb"))),
            ("RSS per watcher, peak (B)", per_watcher(res.get("rss_max_kb")))]


def kib_to_mib(v):
    return None if v is None else v / 1024.0


def load_per_server(results, pattern):
    """{server: JSON of results/<pattern % server>} for the files that exist."""
    out = {}
    for s in SERVERS:
        path = os.path.join(results, pattern % s)
        if os.path.exists(path):
            with open(path) as f:
                out[s] = json.load(f)
    return out


def resource_rows(label, res, figures_of, skip=()):
    """Table rows (label, figure, etcd, cairn) of figures_of(each server's JSON)."""
    per_server = {s: dict(figures_of(res.get(s))) for s in SERVERS}
    return [(label, figure, per_server["etcd"].get(figure), per_server["cairn"].get(figure))
            for figure, _ in figures_of(res.get("etcd") or res.get("cairn"))
            if figure not in skip]


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
    res = load_per_server(results, "resources.%s.json")
    if res:
        keys = res.get("etcd", res.get("cairn", {})).get("keys")
        label = "%s keys of 256 B" % fmt(keys) if keys else "data set"
        rows += resource_rows(label, res, resource_figures, skip=("keys loaded",))
    wres = load_per_server(results, "resources-watchers.%s.json")
    if wres:
        any_res = wres.get("etcd") or wres.get("cairn")
        label = "%s watchers on %s streams" % (fmt(any_res.get("watchers")),
                                                fmt(any_res.get("streams")))
        rows += resource_rows(label, wres, watcher_memory_figures)

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


# ------------------------------------------------------------------ scale
# scripts/bench-scale.sh: the key-count curve and the watcher curve.
KEY_RUN = re.compile(r"^(?:load|put|range-l|range-s)-n(\d+)\.(\w+)\.json$|"
                     r"^resources-n(\d+)\.(\w+)\.json$")
WATCH_RUN = re.compile(r"^watch-w(\d+)\.(\w+)\.json$")
DEFAULT_IMG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "img")
COLORS = {"etcd": "#1f77b4", "cairn": "#d62728"}


def scale_points(results):
    """(sorted key counts, sorted watcher counts, servers present)."""
    keys, watchers, servers = set(), set(), set()
    for name in os.listdir(results):
        m = KEY_RUN.match(name)
        if m:
            keys.add(int(m.group(1) or m.group(3)))
            servers.add(m.group(2) or m.group(4))
            continue
        m = WATCH_RUN.match(name)
        if m:
            watchers.add(int(m.group(1)))
            servers.add(m.group(2))
    ordered = [s for s in SERVERS if s in servers] + sorted(servers - set(SERVERS))
    return sorted(keys), sorted(watchers), ordered


def load_resources(results, n, server, kind="n"):
    path = os.path.join(results, "resources-%s%d.%s.json" % (kind, n, server))
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def key_point(results, n, server):
    """The figures of one server at N keys; None where a run is missing."""
    res = load_resources(results, n, server) or {}
    point = {"rss_mib": kib_to_mib(res.get("rss_kb")),
             "hwm_mib": kib_to_mib(res.get("hwm_kb")),
             "disk_mib": kib_to_mib(res.get("disk_kb"))}
    # Errors of the runs there are (a missing run shows as n/a itself).
    errors = None
    for run in ("load", "put", "range-l", "range-s"):
        r = load(results, "%s-n%d" % (run, n), server)
        lat = (r or {}).get("latency_ms", {})
        point[run] = (r or {}).get("throughput")
        point[run + " p50"] = lat.get("p50")
        point[run + " p99"] = lat.get("p99")
        if r is not None:
            errors = (errors or 0) + (r.get("errors") or 0)
    point["errors"] = errors
    return point if res or errors is not None else None


def watch_point(results, w, server):
    r = load(results, "watch-w%d" % w, server)
    if r is None:
        return None
    lat = r.get("latency_ms", {})
    extra = r.get("extra", {})
    return {"streams": extra.get("streams"), "puts": extra.get("puts_acked"),
            "rate": extra.get("put_rate_achieved"),
            "rate_target": extra.get("put_rate_target"),
            "p50": lat.get("p50"), "p99": lat.get("p99"), "max": lat.get("max"),
            "events_s": r.get("throughput"),
            "received": extra.get("events_received"), "expected": extra.get("events_expected"),
            "exactly_once": extra.get("exactly_once"), "errors": r.get("errors"),
            "rss_per_watcher": rss_per_watcher(load_resources(results, w, server, "w"), w)}


def rss_per_watcher(res, w):
    """Bytes of RSS the watchers added (maximum during the run less before), per watcher."""
    if not res or not w or res.get("rss_max_kb") is None or res.get("rss_idle_kb") is None:
        return None
    return max(0, res["rss_max_kb"] - res["rss_idle_kb"]) * 1024.0 / w


def pair(a, b):
    return "%s / %s" % (fmt(a), fmt(b))


def scale_tables(results):
    keys, watchers, servers = scale_points(results)
    out = []
    if keys:
        out += ["Key count (keys of 256 B, loaded once; put and range: 64 clients / 8 conns "
                "over the same keys):", "",
                "| server | keys | RSS (MiB) | peak RSS (MiB) | disk (MiB) | load (ops/s) "
                "| put (ops/s) | put p50 / p99 (ms) "
                "| range lin. (ops/s) | range lin. p50 / p99 (ms) "
                "| range ser. (ops/s) | range ser. p50 / p99 (ms) | errors |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in servers:
            for n in keys:
                p = key_point(results, n, s)
                if p is None:
                    continue
                out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    s, fmt(n), fmt(p["rss_mib"]), fmt(p["hwm_mib"]), fmt(p["disk_mib"]),
                    fmt(p["load"]), fmt(p["put"]), pair(p["put p50"], p["put p99"]),
                    fmt(p["range-l"]), pair(p["range-l p50"], p["range-l p99"]),
                    fmt(p["range-s"]), pair(p["range-s p50"], p["range-s p99"]),
                    fmt(p["errors"])))
    if watchers:
        if out:
            out.append("")
        out += ["Watchers (one prefix; delivery: put sent -> event received):", "",
                "| server | watchers | streams | puts | put rate (puts/s) "
                "| delivery p50 (ms) | delivery p99 (ms) | delivery max (ms) | events/s "
                "| events received / expected | exactly once | RSS per watcher (B) |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|"]
        for s in servers:
            for w in watchers:
                p = watch_point(results, w, s)
                if p is None:
                    continue
                out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    s, fmt(w), fmt(p["streams"]), fmt(p["puts"]), fmt(p["rate"]),
                    fmt(p["p50"]), fmt(p["p99"]), fmt(p["max"]), fmt(p["events_s"]),
                    pair(p["received"], p["expected"]), fmt(p["exactly_once"]),
                    fmt(p["rss_per_watcher"])))
    return "\n".join(out)


def gp_value(v):
    return "NaN" if v is None else "%.6g" % v


def write_dat(path, header, rows):
    with open(path, "w") as f:
        f.write("# " + header + "\n")
        for row in rows:
            f.write(" ".join(gp_value(v) for v in row) + "\n")


def count_label(n):
    """1000 -> 1k, 5000000 -> 5M: a tic label."""
    for div, suffix in ((1000000, "M"), (1000, "k")):
        if n >= div and n % (div // 10) == 0:
            return ("%g" % (n / div)) + suffix
    return str(n)


def xtics(points):
    return "set xtics (%s)" % ", ".join('"%s" %d' % (count_label(n), n) for n in points)


def scale_plots(results, img_dir):
    """Writes the .dat and .gp files into results and runs gnuplot; returns
    the PNGs written."""
    keys, watchers, servers = scale_points(results)
    os.makedirs(img_dir, exist_ok=True)
    scripts = []
    # Autoscaled x gets a margin, so that no point sits on the border (and y,
    # set per panel, some headroom); the legend goes under each panel.
    head = ['set grid', 'set logscale x', 'set key below', 'set autoscale xfix']
    x_margin = "set offsets graph 0.06, graph 0.06"
    if keys:
        dats = {}
        for s in servers:
            rows = []
            for n in keys:
                p = key_point(results, n, s)
                if p is not None:
                    rows.append((n, p["rss_mib"], p["disk_mib"], p["put"], p["range-l"],
                                 p["range-s"], p["put p99"], p["range-l p99"]))
            if rows:
                dats[s] = os.path.join(results, "scale-keys.%s.dat" % s)
                write_dat(dats[s], "keys rss_mib disk_mib put_ops range_l_ops range_s_ops "
                          "put_p99_ms range_l_p99_ms", rows)
        png = os.path.join(img_dir, "scale-keys.png")
        gp = ['set terminal pngcairo size 1500,580 font "DejaVu Sans,11"',
              'set output "%s"' % png,
              'set multiplot layout 1,3 title "etcd and cairn against the number of keys '
              '(256 B values, one member each)"'] + head + ['set xlabel "keys (log scale)"', xtics(keys)]

        def panel(title, ylabel, series, logy=False):
            gp.extend(['set title "%s"' % title, 'set ylabel "%s"' % ylabel,
                       "set logscale y" if logy else "unset logscale y",
                       "set yrange [*:*]" if logy else "set yrange [0:*]",
                       x_margin + (", 0, 0" if logy else ", graph 0.1, 0")])
            parts = []
            for s, path in dats.items():
                for col, dash, what in series:
                    parts.append('"%s" using 1:%d with linespoints lw 2 dt %d pt 7 lc rgb "%s" '
                                 'title "%s %s"' % (path, col, dash, COLORS.get(s, "black"), s, what))
            gp.append("plot " + ", \\\n     ".join(parts))

        panel("memory and disk after the load", "MiB (log scale)",
              [(2, 1, "RSS"), (3, 2, "disk")], logy=True)
        panel("put, 64 clients, over the N keys", "ops/s", [(4, 1, "put")])
        panel("range, 64 clients, over the N keys", "ops/s",
              [(5, 1, "linearizable"), (6, 2, "serializable")])
        gp.append("unset multiplot")
        if dats:
            scripts.append((os.path.join(results, "scale-keys.gp"), gp, png))
    if watchers:
        dats = {}
        for s in servers:
            rows = []
            for w in watchers:
                p = watch_point(results, w, s)
                if p is not None:
                    # What the writer was asked for, not what a saturated server let it do.
                    rate = p["rate_target"] if p.get("rate_target") is not None else p["rate"]
                    offered = w * rate if rate is not None else None
                    rows.append((w, p["p50"], p["p99"], p["events_s"], offered))
            if rows:
                dats[s] = os.path.join(results, "scale-watchers.%s.dat" % s)
                write_dat(dats[s], "watchers p50_ms p99_ms events_per_s offered_events_per_s",
                          rows)
        png = os.path.join(img_dir, "scale-watchers.png")
        gp = ['set terminal pngcairo size 1200,580 font "DejaVu Sans,11"',
              'set output "%s"' % png,
              'set multiplot layout 1,2 title "etcd and cairn against the number of watchers '
              '(one prefix, writer at a fixed rate)"'] + head + [
              'set xlabel "watchers (log scale)"', xtics(watchers), x_margin + ", 0, 0",
              'set title "event delivery latency (put sent -> event received)"',
              'set ylabel "ms (log scale)"', "set logscale y"]
        parts = []
        for s, path in dats.items():
            c = COLORS.get(s, "black")
            parts.append('"%s" using 1:2 with linespoints lw 2 dt 1 pt 7 lc rgb "%s" '
                         'title "%s p50"' % (path, c, s))
            parts.append('"%s" using 1:3 with linespoints lw 2 dt 2 pt 5 lc rgb "%s" '
                         'title "%s p99"' % (path, c, s))
        gp.append("plot " + ", \\\n     ".join(parts))
        gp.extend(['set title "events delivered per second"', 'set ylabel "events/s (log scale)"'])
        parts = []
        for i, (s, path) in enumerate(dats.items()):
            if i == 0:
                parts.append('"%s" using 1:5 with lines lw 2 dt 3 lc rgb "gray50" '
                             'title "offered (watchers x put rate)"' % path)
            parts.append('"%s" using 1:4 with linespoints lw 2 pt 7 lc rgb "%s" title "%s"'
                         % (path, COLORS.get(s, "black"), s))
        gp.append("plot " + ", \\\n     ".join(parts))
        gp.append("unset multiplot")
        if dats:
            scripts.append((os.path.join(results, "scale-watchers.gp"), gp, png))
    written = []
    for path, gp, png in scripts:
        with open(path, "w") as f:
            f.write("\n".join(gp) + "\n")
        p = subprocess.run(["gnuplot", path], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("gnuplot %s failed: %s" % (path, p.stderr.strip()[-2000:]))
        written.append(png)
    return written


def scale(argv):
    args = list(argv)
    img_dir = DEFAULT_IMG_DIR
    if "--img-dir" in args:
        i = args.index("--img-dir")
        if i + 1 >= len(args):
            sys.stderr.write(__doc__)
            return 2
        img_dir = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    results = args[0]
    text = scale_tables(results)
    if not text:
        sys.stderr.write("bench_report.py scale: no scale results in %s\n" % results)
        return 1
    print(text)
    sys.stdout.flush()
    try:
        for png in scale_plots(results, img_dir):
            sys.stderr.write("bench_report.py: wrote %s\n" % png)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
        sys.stderr.write("bench_report.py scale: no plots: %s\n" % e)
        return 1
    return 0


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
    if len(argv) >= 3 and argv[1] == "scale":
        return scale(argv[2:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
