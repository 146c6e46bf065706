#!/usr/bin/env python3
"""Loss curves from trainer CSV logs (kind,step,loss,...) as one SVG, no
plotting library needed: plot.py OUT.svg NAME=log.csv [NAME=log.csv ...]"""
import csv
import math
import sys

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def read(path):
    pts = []
    with open(path) as f:
        for row in csv.DictReader(f):
            if row.get("kind") == "train":
                pts.append((int(row["step"]), float(row["loss"])))
    return pts


def smooth(pts, k=9):
    out = []
    for i in range(len(pts)):
        window = [p[1] for p in pts[max(0, i - k + 1): i + 1]]
        out.append((pts[i][0], sum(window) / len(window)))
    return out


def main():
    out, series = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
    data = [(name, smooth(read(path))) for name, path in series]
    W, H, L, R, T, B = 760, 440, 70, 150, 30, 50
    xmax = max(p[0] for _, pts in data for p in pts)
    ys = [math.log10(max(p[1], 1e-6)) for _, pts in data for p in pts]
    ylo, yhi = math.floor(min(ys)), math.ceil(max(ys))
    sx = lambda x: L + (W - L - R) * x / xmax
    sy = lambda y: T + (H - T - B) * (yhi - math.log10(max(y, 1e-6))) / (yhi - ylo)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for e in range(ylo, yhi + 1):
        y = T + (H - T - B) * (yhi - e) / (yhi - ylo)
        svg.append(f'<line x1="{L}" x2="{W - R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        svg.append(f'<text x="{L - 8}" y="{y + 4:.1f}" text-anchor="end">1e{e}</text>')
    for i in range(5):
        x = xmax * i / 4
        svg.append(f'<text x="{sx(x):.1f}" y="{H - B + 18}" text-anchor="middle">{int(x)}</text>')
    svg.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">update</text>')
    svg.append(f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" text-anchor="middle">train loss (smoothed, log scale)</text>')
    for i, (name, pts) in enumerate(data):
        c = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        svg.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.6" points="{path}"/>')
        svg.append(f'<line x1="{W - R + 12}" x2="{W - R + 32}" y1="{T + 18 * i + 6}" y2="{T + 18 * i + 6}" stroke="{c}" stroke-width="3"/>')
        svg.append(f'<text x="{W - R + 38}" y="{T + 18 * i + 10}">{name}</text>')
    svg.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
