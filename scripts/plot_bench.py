#!/usr/bin/env python3
"""Plot the AF_PACKET / TAP benchmark results (issue 8) into one PNG with two panels.

    python3 scripts/plot_bench.py [--csv-dir target/bench] [--out docs/bench-afpacket.png]

Reads every *.csv in --csv-dir (written by bench_pps and bench_tcp; columns
bench,contender,mode,metric,value,unit) and draws:
  left:  UDP packets per second (64 B) by AF_PACKET mode, echo and receive-only, with the
         kernel's own rows as anchors;
  right: bulk TCP Gbit/s by contender, both directions.
matplotlib is installed with pip on first use when it is missing.
"""

import argparse
import collections
import csv
import glob
import os
import subprocess
import sys


def need_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib missing; installing it with pip", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"], check=True)
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    return plt


def read_rows(csv_dir):
    rows = []
    files = sorted(glob.glob(os.path.join(csv_dir, "*.csv")))
    if not files:
        sys.exit(f"no *.csv in {csv_dir}: run scripts/bench_afpacket.sh (or bench_pps / bench_tcp) first")
    for path in files:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                try:
                    r["value"] = float(r["value"])
                except (KeyError, TypeError, ValueError):
                    print(f"{path}: skipping a row without a numeric value: {r}", file=sys.stderr)
                    continue
                rows.append(r)
    return rows


def grouped_bars(ax, groups, series, values, unit_scale=1.0):
    """Bars for each group (x axis), one per series; values[(group, series)] -> value."""
    width = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ys = [values.get((grp, s), 0.0) * unit_scale for grp in groups]
        bars = ax.bar(xs, ys, width, label=s)
        for b, y in zip(bars, ys):
            if y > 0:
                ax.annotate(f"{y:.3g}", (b.get_x() + b.get_width() / 2, y), ha="center",
                            va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv-dir", default="target/bench")
    p.add_argument("--out", default="docs/bench-afpacket.png")
    a = p.parse_args()
    rows = read_rows(a.csv_dir)
    plt = need_matplotlib()

    # Left: pps. Group = "contender mode", series = bench (udp_echo / udp_rx).
    pps = [r for r in rows if r["unit"] == "pps" and r["metric"] == "pps"]
    pps_groups, pps_values = [], {}
    pps_series = sorted({r["bench"] for r in pps})
    for r in pps:
        g = f"{r['contender']}\n{r['mode']}".strip()
        if g not in pps_groups:
            pps_groups.append(g)
        pps_values[(g, r["bench"])] = r["value"]

    # Right: Gbit/s. Group = contender, series = direction (mode column).
    gb = [r for r in rows if r["unit"] == "Gbit/s"]
    gb_groups, gb_values = [], {}
    gb_series = []
    for r in gb:
        if r["contender"] not in gb_groups:
            gb_groups.append(r["contender"])
        if r["mode"] not in gb_series:
            gb_series.append(r["mode"])
        gb_values[(r["contender"], r["mode"])] = r["value"]

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    if pps:
        grouped_bars(left, pps_groups, pps_series, pps_values, 1e-3)
    left.set_title("UDP, 64 B payload: packets per second")
    left.set_ylabel("kpps")
    if gb:
        grouped_bars(right, gb_groups, gb_series, gb_values)
    right.set_title("Bulk TCP: Gbit/s of payload")
    right.set_ylabel("Gbit/s")
    fig.tight_layout()
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    fig.savefig(a.out, dpi=120)
    counts = collections.Counter(r["bench"] for r in rows)
    print(f"wrote {a.out} ({', '.join(f'{k}: {v} rows' for k, v in sorted(counts.items()))})")


if __name__ == "__main__":
    main()
