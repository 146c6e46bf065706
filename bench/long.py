#!/usr/bin/env python3
"""Long context (issue 19.5): GPT-2 124M at T = 1024, bpc against PyTorch eager at its best.

For B = 2 and B = 8 it trains bench/models/gpt.yaml at GPT-2 small's shape
(L=12, C=768, NH=12, V=50257, T=1024, AdamW) in bpc (f32; at B = 8 also with
`--max-memory 8G` and `6G`) and in the eager f32 PyTorch peers (Debian's with
OpenBLAS's own kernel, `torch.ownblas`, and PyTorch 2.x from the package
index, `torch2`, whose attention is F.scaled_dot_product_attention), runs
alternating, and reports ms/step and each process's peak RSS (wait4). Then
the largest batch that trains in 16 GiB for each: bpc's from `bpc check
--max-memory 16G` (the largest B whose plan fits), confirmed by training it;
PyTorch's from its measured RSS at B = 2 and 8 (linear in B), confirmed by
training that batch when it fits this machine. Past the first batch only the
peer that was fastest at it runs (each GPT-2 step at B = 8 takes a minute).
Results: OUT/long.md.

    bench/long.py --build build-bench [--steps 3] [--runs 2] [--skip-max-batch]
"""
import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (run_rss, make_data, peers_available, peer_env, log)

ROOT = bench.ROOT
GPT2 = dict(L=12, C=768, NH=12, T=1024, V=50257)
GIB16 = 16 * 1024  # MiB


def dflags(d):
    return sum((["-D", f"{k}={v}"] for k, v in d.items()), [])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--venv", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--batches", default="2,8")
    ap.add_argument("--skip-max-batch", action="store_true")
    ap.add_argument("-D", action="append", default=[], help="override a dimension (a smoke test: -D L=1 -D C=64)")
    a = ap.parse_args()
    for kv in a.D:
        k, v = kv.split("=")
        GPT2[k] = int(v)
    out_dir = a.out or os.path.join(a.build, "results")
    venv = a.venv or os.path.join(a.build, "venv")
    work = os.path.join(a.build, "bench-work")
    os.makedirs(os.path.join(work, "data"), exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    bpc = os.path.join(a.build, "bpc")
    yaml = os.path.join(ROOT, "bench", "models", "gpt.yaml")
    peers = [p for p in bench.peers_available(venv) if p[0] in ("torch.ownblas", "torch2")]
    if not peers:  # no OpenBLAS override in this environment: Debian's PyTorch as it is
        peers = [p for p in bench.peers_available(venv) if p[0] == "torch"]
    log = bench.log

    def train_bpc(exe, data, steps):
        o, _, rss = bench.run_rss([exe, "train", "--data", data, "--steps", str(steps), "--threads",
                                   str(a.threads), "--timing", "--quiet", "--save", os.path.join(work, "long.safetensors")])
        return float(re.search(r"median_ms ([\d.]+)", o).group(1)), rss

    def train_peer(p, data, d, steps):
        label, py, pfw, envc, _ = p
        cmd = [py, os.path.join(ROOT, "bench", "peers.py"), pfw, "gpt", "--data", data, "--steps", str(steps),
               "--threads", str(a.threads)] + dflags(d)
        o, _, rss = bench.run_rss(cmd, env=bench.peer_env(a.threads, envc))
        j = json.loads(o.strip().splitlines()[-1])
        return j["median_ms"], rss, j["version"]

    rows = []
    for B in [int(b) for b in a.batches.split(",")]:
        if rows and len(peers) > 1:  # past the first batch, the fastest peer of the first only (time)
            first = rows[0]["res"]
            timed = [p for p in peers if p[0] in first]
            if timed:
                peers = [min(timed, key=lambda p: med(first[p[0]]["ms"]))]
                log(f"long: from B={B} on, the fastest peer at B={rows[0]['B']} only: {peers[0][0]}")
        d = dict(GPT2, B=B)
        data = os.path.join(work, "data", f"long_b{B}.safetensors")
        bench.make_data("gpt", d, data)
        chk = subprocess.run([bpc, "check", yaml] + dflags(d), capture_output=True, text=True, check=True).stdout
        flops = int(re.search(r"total: (\d+) FLOPs", chk).group(1))
        # at B = 8 also under budgets: 8G (issue 19.5's) and 6G (recomputation: half PyTorch's RSS)
        fws = [("bpc", [])] + ([(f"bpc --max-memory {m}", ["--max-memory", m]) for m in ("8G", "6G")] if B == 8 else [])
        exes = {}
        for name, extra in fws:
            exes[name] = os.path.join(work, f"trainer_long_b{B}" + ("_" + extra[1] if extra else ""))
            bench.run_rss([bpc, "compile", yaml, "-o", exes[name]] + dflags(d) + extra)
        res = {name: dict(ms=[], rss=0.0, ver=name) for name, _ in fws}
        res.update({p[0]: dict(ms=[], rss=0.0, ver="") for p in peers})
        failed = set()
        for _ in range(a.runs):
            for name, _ in fws:
                ms, rss = train_bpc(exes[name], data, a.steps)
                res[name]["ms"].append(ms)
                res[name]["rss"] = max(res[name]["rss"], rss)
                log(f"long: B={B} {name}: {ms:.0f} ms/step, RSS {rss:.0f} MiB")
            for p in peers:
                if p[0] in failed:
                    continue
                try:
                    ms, rss, ver = train_peer(p, data, d, a.steps)
                except Exception as e:  # reported, not fatal
                    log(f"long: B={B} {p[0]} failed: {e}")
                    failed.add(p[0])
                    continue
                res[p[0]]["ms"].append(ms)
                res[p[0]]["rss"] = max(res[p[0]]["rss"], rss)
                res[p[0]]["ver"] = ver
                log(f"long: B={B} {p[0]}: {ms:.0f} ms/step, RSS {rss:.0f} MiB")
        rows.append(dict(B=B, flops=flops, res={k: v for k, v in res.items() if v["ms"]}))

    maxb = {}
    if not a.skip_max_batch:
        # bpc: the largest B whose plan fits 16 GiB (params, gradients, state, arena, scratch)
        lo, hi = 1, 1
        def fits(b):
            r = subprocess.run([bpc, "check", yaml, "--max-memory", "16G"] + dflags(dict(GPT2, B=b)),
                               capture_output=True, text=True)
            return r.returncode == 0
        while fits(hi * 2) and hi < 256:
            hi *= 2
        lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        d = dict(GPT2, B=lo)
        data = os.path.join(work, "data", f"long_b{lo}.safetensors")
        bench.make_data("gpt", d, data)
        exe = os.path.join(work, "trainer_long_max")
        bench.run_rss([bpc, "compile", yaml, "-o", exe, "--max-memory", "16G"] + dflags(d))
        ms, rss = train_bpc(exe, data, 2)
        maxb["bpc --max-memory 16G"] = dict(B=lo, rss=rss, ms=ms, how="the largest B bpc check plans in 16G; trained 2 steps")
        log(f"long: bpc largest batch in 16 GiB: B={lo}, RSS {rss:.0f} MiB, {ms:.0f} ms/step")
        for p in peers:
            pts = [(r["B"], r["res"][p[0]]["rss"]) for r in rows if p[0] in r["res"]]
            if len(pts) < 2:
                continue
            (b1, r1), (b2, r2) = pts[0], pts[-1]
            slope = (r2 - r1) / (b2 - b1)
            bmax = int((GIB16 - (r1 - slope * b1)) // slope) if slope > 0 else 0
            entry = dict(B=bmax, rss=None, ms=None, how=f"RSS linear in B from B={b1} and B={b2}")
            if bmax > 0 and bmax not in (b1, b2) and r1 + slope * (bmax - b1) < 20 * 1024:
                d = dict(GPT2, B=bmax)
                data = os.path.join(work, "data", f"long_b{bmax}.safetensors")
                bench.make_data("gpt", d, data)
                try:
                    ms, rss, _ = train_peer(p, data, d, 2)
                    entry.update(rss=rss, ms=ms, how=entry["how"] + "; trained 2 steps")
                except Exception as e:
                    log(f"long: {p[0]} at B={bmax} failed: {e}")
            maxb[p[0]] = entry
            log(f"long: {p[0]} largest batch in 16 GiB: {entry}")
    report(rows, maxb, out_dir)
    return 0


def med(v):
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def report(rows, maxb, out_dir):
    L = ["# Long context: GPT-2 124M at T = 1024 (bench/long.py)", "",
         "ms/step: median over runs of each run's median step; RSS: the process's peak (wait4).", "",
         "| B | framework | ms/step | GFLOP/s | peak RSS MiB | runs | vs fastest peer | RSS vs that peer |",
         "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peer_ms = {k: med(v["ms"]) for k, v in r["res"].items() if not k.startswith("bpc")}
        best = min(peer_ms, key=peer_ms.get) if peer_ms else None
        for k, v in r["res"].items():
            ms = med(v["ms"])
            sp = f"{peer_ms[best] / ms:.2f}x" if best and k.startswith("bpc") else ""
            rr = f"{v['rss'] / r['res'][best]['rss']:.2f}" if best and k.startswith("bpc") else ""
            L.append(f"| {r['B']} | {k} | {ms:.0f} | {r['flops'] / ms / 1e6:.1f} | {v['rss']:.0f} | "
                     + " ".join(f"{m:.0f}" for m in v["ms"]) + f" | {sp} | {rr} |")
    if maxb:
        L += ["", "Largest batch that trains in 16 GiB:", "", "| framework | B | peak RSS MiB | ms/step | how |",
              "|---|---|---|---|---|"]
        for k, v in maxb.items():
            L.append(f"| {k} | {v['B']} | {v['rss'] if v['rss'] is None else round(v['rss'])} | "
                     f"{'' if v['ms'] is None else round(v['ms'])} | {v['how']} |")
    text = "\n".join(L) + "\n"
    with open(os.path.join(out_dir, "long.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
