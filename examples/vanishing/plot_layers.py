#!/usr/bin/env python3
"""Per-layer gradient norms (mean over the first N updates of a trainer's
--grad-stats log) against depth, one line per model, log scale, as SVG:
plot_layers.py OUT.svg N NAME=log.csv [NAME=log.csv ...]"""
import csv
import math
import sys

COLORS = ["#d62728", "#1f77b4", "#2ca02c"]


def layer_norms(path, n):
    rows = [r for r in csv.DictReader(open(path)) if r.get("kind") == "train"][:n]
    cols = [c for c in rows[0] if c.startswith("norm.") and (c.endswith(".w") or c in ("norm.w_in", "norm.w_out"))]
    def depth(c):
        if c == "norm.w_in":
            return 0
        if c == "norm.w_out":
            return 10**6
        return int(c.split(".")[2]) + 1
    cols.sort(key=depth)
    return [sum(float(r[c]) for r in rows) / len(rows) for c in cols]


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    data = [(a.split("=", 1)[0], layer_norms(a.split("=", 1)[1], n)) for a in sys.argv[3:]]
    W, H, L, R, T, B = 760, 420, 70, 170, 30, 50
    ys = [math.log10(max(v, 1e-30)) for _, vs in data for v in vs]
    ylo, yhi = math.floor(min(ys)), math.ceil(max(ys))
    depth = max(len(vs) for _, vs in data) - 1
    sx = lambda i: L + (W - L - R) * i / depth
    sy = lambda v: T + (H - T - B) * (yhi - math.log10(max(v, 1e-30))) / (yhi - ylo)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>']
    step = max(1, (yhi - ylo) // 8)
    for e in range(ylo, yhi + 1, step):
        y = T + (H - T - B) * (yhi - e) / (yhi - ylo)
        s.append(f'<line x1="{L}" x2="{W - R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        s.append(f'<text x="{L - 8}" y="{y + 4:.1f}" text-anchor="end">1e{e}</text>')
    for i in range(depth + 1):
        label = "in" if i == 0 else "out" if i == depth else str(i)
        s.append(f'<text x="{sx(i):.1f}" y="{H - B + 18}" text-anchor="middle">{label}</text>')
    s.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">layer (input to output)</text>')
    s.append(f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" text-anchor="middle">weight gradient L2 norm, first {n} updates</text>')
    for k, (name, vs) in enumerate(data):
        c = COLORS[k % len(COLORS)]
        pts = " ".join(f"{sx(i):.1f},{sy(v):.1f}" for i, v in enumerate(vs))
        s.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"/>')
        for i, v in enumerate(vs):
            s.append(f'<circle cx="{sx(i):.1f}" cy="{sy(v):.1f}" r="3" fill="{c}"/>')
        s.append(f'<line x1="{W - R + 12}" x2="{W - R + 32}" y1="{T + 18 * k + 6}" y2="{T + 18 * k + 6}" stroke="{c}" stroke-width="3"/>')
        s.append(f'<text x="{W - R + 38}" y="{T + 18 * k + 10}">{name}</text>')
    s.append("</svg>")
    open(out, "w").write("\n".join(s) + "\n")


if __name__ == "__main__":
    main()
