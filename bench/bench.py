#!/usr/bin/env python3
"""bench/bench.py — bpc against the peers a user would pick instead, in one run.

    python3 bench/bench.py [--quick] [--out DIR] [--build DIR] [--venv DIR] [--threads N]

(`make bench` installs what is missing, builds, and runs this.) For each model of
bench/models it compiles a bpc trainer (timing the compile), trains on a
synthetic data file, and trains the same model, shapes, optimizer and data in
PyTorch eager (Debian's python3-torch, OpenMP OpenBLAS, same thread count), and
in torch.compile and JAX jit when bench/setup.sh could install them. Each
framework runs in a process of its own (its peak RSS read by wait4); ms/step is
the median over the steps after warm-up, and the median of the runs. It also
measures this machine's peak FP32 (bench_peak) and GEMM against OpenBLAS
(bench_gemm), and writes DIR/bench.md, DIR/bench.csv, DIR/gemm.csv, DIR/bench.png.
"""
import argparse
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import threading
import time

import numpy as np

from peers import DIMS  # the models' default dims, shared with the peers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPENBLAS_OMP = "/usr/lib/x86_64-linux-gnu/openblas-openmp"

# label, bench/models file, -D dims, steps per run, runs
MODELS = [
    ("xor", "xor", {}, 2000, 5),
    ("mlp", "mlp", {}, 150, 5),
    ("gpt_poetry", "gpt", {}, 30, 5),
    ("gpt2_small", "gpt", dict(L=12, C=768, NH=12, T=64, B=4, V=50257), 8, 5),
    ("convnet", "convnet", {}, 100, 5),
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def write_safetensors(path, tensors):
    head, off, blobs = {}, 0, []
    for k, a in tensors.items():
        a = np.ascontiguousarray(a)
        dt = {np.float32: "F32", np.int32: "I32"}[a.dtype.type]
        head[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(head).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make_data(model, dims, path):
    rng = np.random.default_rng(0)
    if model == "xor":
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
        write_safetensors(path, {"x": x, "y": (x[:, :1] != x[:, 1:]).astype(np.float32)})
    elif model in ("mlp", "convnet"):
        n = 32 * (256 if model == "mlp" else 64)
        write_safetensors(path, {"x": rng.random((n, 784), dtype=np.float32),
                                 "y": rng.integers(0, 10, n, dtype=np.int32)})
    else:
        d = dict(DIMS["gpt"], **dims)
        n = 16 * d["B"]
        toks = rng.integers(0, d["V"], (n, d["T"] + 1), dtype=np.int32)
        write_safetensors(path, {"tokens": toks[:, :-1].copy(), "targets": toks[:, 1:].copy()})


def run_rss(cmd, env=None, cwd=None):
    """Runs cmd; returns (stdout, seconds, the child's own peak RSS in MiB from wait4)."""
    t0 = time.perf_counter()
    r, w = os.pipe()
    er, ew = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1)
        os.dup2(ew, 2)
        os.close(r)
        os.close(er)
        if cwd:
            os.chdir(cwd)
        try:
            os.execvpe(cmd[0], cmd, env if env is not None else os.environ)
        finally:
            os._exit(127)
    os.close(w)
    os.close(ew)

    def drain(fd, acc):
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            acc.append(b)
    eacc, oacc = [], []
    th = threading.Thread(target=drain, args=(er, eacc))
    th.start()
    drain(r, oacc)
    th.join()
    _, status, ru = os.wait4(pid, 0)
    dt = time.perf_counter() - t0
    os.close(r)
    os.close(er)
    out, err = b"".join(oacc).decode(errors="replace"), b"".join(eacc).decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {os.waitstatus_to_exitcode(status)}:\n{err[-3000:]}")
    return out, dt, ru.ru_maxrss / 1024.0


def torch_env(threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if os.path.isdir(OPENBLAS_OMP):
        env["LD_LIBRARY_PATH"] = OPENBLAS_OMP + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


# A peer: label (the table's column), python, peers.py's framework, env changes
# (None: remove the variable), precision. Debian's PyTorch runs twice: with the
# OpenBLAS kernel this environment forces (OPENBLAS_CORETYPE=Haswell, 256-bit)
# and with OpenBLAS's own choice (the variables cleared for that peer alone;
# its Cooperlake AVX-512 kernel on Zen 4/5), kept only when its loss agrees.
def peers_available(venv):
    out = [("torch", "/usr/bin/python3", "torch", {}, "f32")]
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_L2_SIZE"):
        out.append(("torch.ownblas", "/usr/bin/python3", "torch",
                    {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None}, "f32"))
    vpy = os.path.join(venv, "bin", "python3")
    if not os.path.exists(vpy):
        log(f"bench: no venv at {venv}: PyTorch 2.x, torch.compile and JAX skipped")
        return out
    ok = subprocess.run([vpy, "-c", "import torch._dynamo"], capture_output=True).returncode == 0
    if ok:
        out += [("torch2", vpy, "torch", {}, "f32"), ("torch2.bf16", vpy, "torch.bf16", {}, "bf16"),
                ("torch.compile", vpy, "torch.compile", {}, "f32"),
                ("torch.compile.bf16", vpy, "torch.compile.bf16", {}, "bf16")]
    else:
        log(f"bench: torch 2.x not installed in {venv}; PyTorch 2.x and torch.compile skipped")
    if subprocess.run([vpy, "-c", "import jax"], capture_output=True).returncode == 0:
        out.append(("jax", vpy, "jax", {}, "f32"))
    else:
        log(f"bench: jax not installed in {venv}; skipped")
    return out


def peer_env(threads, changes):
    env = torch_env(threads)
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


PRECISION = {"bpc": "f32", "bpc.bf16": "bf16"}  # filled with the peers' below


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and runs (a smoke test)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--out", default=None, help="results folder (default BUILD/results)")
    ap.add_argument("--venv", default=None, help="venv with jax and torch for torch.compile (default BUILD/venv)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None, help="comma-separated model labels")
    ap.add_argument("--frameworks", default=None,
                    help="comma-separated: bpc,bpc.bf16,torch,torch.ownblas,torch2,torch2.bf16,torch.compile,"
                         "torch.compile.bf16,jax")
    a = ap.parse_args()
    out_dir = a.out or os.path.join(a.build, "results")
    venv = a.venv or os.path.join(a.build, "venv")
    os.makedirs(out_dir, exist_ok=True)
    work = os.path.join(a.build, "bench-work")
    os.makedirs(os.path.join(work, "data"), exist_ok=True)
    bpc = os.path.join(a.build, "bpc")
    want = set(a.frameworks.split(",")) if a.frameworks else None

    # ---- peak and GEMM
    peak = {}
    peak512 = {}  # the 512-bit FMA rate, on a CPU with AVX-512: what an avx512 GEMM row is measured against
    peakbf16 = {}  # vdpbf16ps, on a CPU with AVX512_BF16: the bf16 GEMM's

    def measure_peak():  # the best seen: a busy neighbour lowers a reading, nothing raises it
        o = subprocess.run([os.path.join(a.build, "bench_peak"), str(a.threads)], capture_output=True, text=True,
                           check=True).stdout
        for m in re.finditer(r"peak_gflops (\d+) ([\d.]+)", o):
            peak[int(m.group(1))] = max(peak.get(int(m.group(1)), 0.0), float(m.group(2)))
        for m in re.finditer(r"peak512_gflops (\d+) ([\d.]+)", o):
            peak512[int(m.group(1))] = max(peak512.get(int(m.group(1)), 0.0), float(m.group(2)))
        for m in re.finditer(r"peakbf16_gflops (\d+) ([\d.]+)", o):
            peakbf16[int(m.group(1))] = max(peakbf16.get(int(m.group(1)), 0.0), float(m.group(2)))
        log(f"bench: peak FP32 {peak[1]:.1f} GFLOP/s on 1 thread, {peak.get(a.threads, peak[1]):.1f} on {a.threads}")

    measure_peak()
    gemm = []
    if not a.only:
        o = subprocess.run([os.path.join(a.build, "bench_gemm")] + (["--quick"] if a.quick else []),
                           capture_output=True, text=True, check=True).stdout
        # OpenBLAS with its own kernel choice (the variables cleared), bpck's bf16 GEMM beside it
        o2 = subprocess.run([os.path.join(a.build, "bench_gemm"), "--bf16"] + (["--quick"] if a.quick else []),
                            capture_output=True, text=True, check=True,
                            env=peer_env(1, {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None})).stdout
        own = {}
        for line in o2.splitlines():
            f = line.split()
            if f and f[0] == "gemm":
                own[(f[1], f[2], f[3], f[4], f[5], f[6], f[7])] = (float(f[8]), float(f[9]), f[10])
        for line in o.splitlines():
            f = line.split()
            if f and f[0] == "gemm":
                bf, ob, bisa = own.get(tuple(f[1:8]), (0.0, 0.0, "-"))
                gemm.append(dict(label=f[1], M=int(f[2]), N=int(f[3]), K=int(f[4]), ta=int(f[5]), tb=int(f[6]),
                                 threads=int(f[7]), bpck=float(f[8]), openblas=float(f[9]),
                                 isa=f[10] if len(f) > 10 else "avx2", bf16=bf, openblas_own=ob, bf16_isa=bisa))
                log("bench: " + line)

    peers = [p for p in peers_available(venv) if not want or p[0] in want]
    rows = []
    for label, mfile, dims, steps, runs in MODELS:
        if a.only and label not in a.only.split(","):
            continue
        if a.quick:
            steps, runs = max(5, steps // 4), 1
        yaml = os.path.join(ROOT, "bench", "models", mfile + ".yaml")
        data = os.path.join(work, "data", label + ".safetensors")
        make_data(mfile, dims, data)
        dflags = sum((["-D", f"{k}={v}"] for k, v in dims.items()), [])
        chk = subprocess.run([bpc, "check", yaml] + dflags, capture_output=True, text=True, check=True).stdout
        flops = int(re.search(r"total: (\d+) FLOPs", chk).group(1))
        # Runs are interleaved (bpc, then each peer, then again): on a shared
        # machine whose speed drifts, every framework sees the same drift.
        fws = [(b, None, None, {}, PRECISION[b]) for b in ("bpc", "bpc.bf16") if not want or b in want]
        fws += list(peers)
        runs_of = {fw[0]: dict(meds=[], first=[], rss=0, ver="", loss=None) for fw in fws}
        ctime = {}
        exes = {"bpc": os.path.join(work, "trainer_" + label), "bpc.bf16": os.path.join(work, "trainer_bf16_" + label)}
        for b in ("bpc", "bpc.bf16"):
            if b in runs_of:
                _, ctime[b], _ = run_rss([bpc, "compile", yaml, "-o", exes[b]] + dflags +
                                         (["--precision", "bf16"] if b == "bpc.bf16" else []))
        failed = set()
        for _ in range(runs):
            for fw, py, pfw, envc, prec in fws:
                if fw in failed:
                    continue
                st = runs_of[fw]
                try:
                    if fw in exes:
                        o, _, r = run_rss([exes[fw], "train", "--data", data, "--steps", str(steps), "--threads",
                                           str(a.threads), "--timing", "--quiet", "--save",
                                           os.path.join(work, label + ".safetensors")])
                        st["meds"].append(float(re.search(r"median_ms ([\d.]+)", o).group(1)))
                        st["ver"] = fw
                    else:
                        cmd = [py, os.path.join(ROOT, "bench", "peers.py"), pfw, mfile, "--data", data, "--steps",
                               str(steps), "--threads", str(a.threads)] + dflags
                        o, _, r = run_rss(cmd, env=peer_env(a.threads, envc))
                        j = json.loads(o.strip().splitlines()[-1])
                        st["meds"].append(j["median_ms"])
                        st["first"].append(j["first_ms"])
                        st["ver"] = j["version"] + (" (OpenBLAS's own kernel)" if fw == "torch.ownblas" else "")
                        st["loss"] = j["loss"]
                    st["rss"] = max(st["rss"], r)
                    if fw == "torch.ownblas" and runs_of["torch"]["loss"] is not None and \
                            abs(st["loss"] - runs_of["torch"]["loss"]) > 1e-3 * max(1.0, abs(runs_of["torch"]["loss"])):
                        log(f"bench: {label} torch.ownblas loss {st['loss']} differs from the forced kernel's "
                            f"{runs_of['torch']['loss']}: left out")
                        failed.add(fw)
                except Exception as e:  # a peer that fails is reported, not fatal
                    if fw in exes:
                        raise
                    log(f"bench: {label} {fw} failed: {e}")
                    failed.add(fw)
        res = {}
        for fw, *_ in fws:
            st = runs_of[fw]
            if fw in failed or not st["meds"]:
                continue
            ms = statistics.median(st["meds"])
            if fw in exes:
                comp = ctime[fw]
            elif fw in ("torch", "torch.ownblas", "torch2", "torch2.bf16"):
                comp = None
            else:
                comp = max(0.0, (statistics.median(st["first"]) - ms) / 1e3)
            res[fw] = dict(ms=ms, compile_s=comp, rss=st["rss"], runs=st["meds"], version=st["ver"])
            log(f"bench: {label:11s} {fw:14s} {ms:10.3f} ms/step  runs " +
                " ".join(f"{m:.3g}" for m in st["meds"]) + (f"  compile {comp:.2f} s" if comp is not None else "") +
                f"  RSS {st['rss']:.0f} MiB")
        prof = None
        if "bpc" in runs_of:  # one more bpc run with --profile: where the step's time goes
            o, _, _ = run_rss([exes["bpc"], "train", "--data", data, "--steps", str(steps), "--threads", str(a.threads),
                               "--profile", "--quiet", "--save", os.path.join(work, label + ".safetensors")])
            prof = o[o.find("profile:"):] if "profile:" in o else None
            if prof:
                with open(os.path.join(out_dir, f"profile_{label}.txt"), "w") as f:
                    f.write(prof)
        rows.append(dict(model=label, flops=flops, dims=dims, res=res, prof=prof))
    measure_peak()
    for fw in peers:
        PRECISION[fw[0]] = fw[4]
    report(rows, gemm, peak, peak512, peakbf16, a.threads, out_dir)
    return 0


TARGETS = {  # model: (min speedup vs PyTorch eager, min fraction of peak, max compile s)
    "xor": (50, None, None), "mlp": (1.5, None, None), "gpt_poetry": (2, 0.5, 1.0),
    "gpt2_small": (2, 0.5, 10.0), "convnet": (1.0, None, None),
}


TARGETS16 = {  # model: (f32 vs the fastest f32 peer, f32 fraction of the widest peak, bf16 vs bpc f32)
    "mlp": (1.5, None, None), "gpt_poetry": (1.6, 0.7, 1.6), "gpt2_small": (2.5, 0.7, None),
}


def report(rows, gemm, peak, peak512, peakbf16, threads, out_dir):
    def gemm_peak(g):  # the peak of the vector width the GEMM ran on
        pks = peak512 if g["isa"] == "avx512" and peak512 else peak
        return pks.get(g["threads"], pks[min(pks)])

    pk = peak.get(threads, peak[1])
    fws = []
    for r in rows:
        for fw in r["res"]:
            if fw not in fws:
                fws.append(fw)
    peers = [f for f in fws if f != "bpc"]
    with open(os.path.join(out_dir, "bench.csv"), "w") as f:
        f.write("model,framework,version,ms_per_step,gflops,pct_peak,speedup_of_bpc,compile_s,peak_rss_mib,"
                "flops_per_step,threads,runs_ms\n")
        for r in rows:
            b = r["res"].get("bpc")
            for fw, x in r["res"].items():
                g = r["flops"] / (x["ms"] * 1e-3) * 1e-9
                sp = x["ms"] / b["ms"] if b else float("nan")
                cs = "" if x["compile_s"] is None else f"{x['compile_s']:.3f}"
                f.write(f"{r['model']},{fw},{x['version']},{x['ms']:.6f},{g:.2f},{100 * g / pk:.1f},{sp:.3f},{cs},"
                        f"{x['rss']:.1f},{r['flops']},{threads},{' '.join(f'{v:.6f}' for v in x['runs'])}\n")
    with open(os.path.join(out_dir, "gemm.csv"), "w") as f:
        f.write("label,M,N,K,transa,transb,threads,bpck_gflops,openblas_gflops,bpck_pct_peak,isa\n")
        for g in gemm:
            p = gemm_peak(g)
            f.write(f"{g['label']},{g['M']},{g['N']},{g['K']},{g['ta']},{g['tb']},{g['threads']},{g['bpck']},"
                    f"{g['openblas']},{100 * g['bpck'] / p:.1f},{g['isa']}\n")
    L = []
    L.append(f"# bpc benchmark\n")
    L.append(f"{time.strftime('%Y-%m-%d %H:%M')} · {threads} threads · peak FP32 measured by bench_peak (best of "
             f"the start and the end of the run): "
             f"{peak[1]:.1f} GFLOP/s on 1 thread, {pk:.1f} on {threads} (256-bit FMA"
             + (f"; 512-bit: {peak512[1]:.1f} and {peak512.get(threads, peak512[1]):.1f}" if peak512 else "")
             + (f"; vdpbf16ps: {peakbf16[1]:.1f} and {peakbf16.get(threads, peakbf16[1]):.1f}" if peakbf16 else "")
             + ") · "
             + ", ".join(sorted({x['version'] for r in rows for x in r['res'].values()})) + "\n")
    L.append("ms/step is the median over the timed steps (after warm-up) of each run, then the median of runs; "
             "runs alternate between frameworks (bpc, each peer, bpc again...) so that a drift in the machine's "
             "speed falls on all of them. "
             "'x' columns: the peer's time over bpc's in the same precision (f32 peers against bpc, bf16 peers "
             "against bpc.bf16; above 1: bpc is faster); bpc.bf16's x is bpc's f32 time over its own. "
             "torch is Debian's PyTorch with the OpenBLAS kernel this environment forces (OPENBLAS_CORETYPE), "
             "torch.ownblas the same with OpenBLAS's own choice (kept only when its loss equals the forced "
             "kernel's), torch2 PyTorch 2.x from the package index (its own oneDNN/MKL kernels), *.bf16 under "
             "CPU autocast to bfloat16. GFLOP/s counts the training "
             "step's FLOPs as `bpc check` does (matmul, conv and attention 2 per multiply-add, full T x T); "
             "% peak is of the widest FMA the machine has (512-bit where present). "
             "Compile: `bpc compile` wall time (exe, linked); for torch.compile and JAX, first step minus a "
             "median step. RSS: the process's peak resident set.\n")
    pkw = peak512.get(threads, pk) if peak512 else pk  # the widest FMA's peak

    def ref_of(r, p):  # bpc's row in p's precision
        if p == "bpc.bf16":
            return r["res"].get("bpc")
        return r["res"].get("bpc.bf16" if PRECISION.get(p) == "bf16" else "bpc")

    hdr = "| model | GFLOP/step | bpc ms | " + " | ".join(f"{p} ms | x" for p in peers) + \
          " | bpc GFLOP/s | % peak | compile s | RSS MiB bpc | " + " | ".join(f"RSS {p}" for p in peers) + " |"
    L.append(hdr)
    L.append("|" + "---|" * (hdr.count("|") - 1))
    for r in rows:
        b = r["res"].get("bpc")
        if not b:
            continue
        g = r["flops"] / (b["ms"] * 1e-3) * 1e-9
        cells = [r["model"], f"{r['flops'] / 1e9:.3f}", fmt_ms(b["ms"])]
        for p in peers:
            x, ref = r["res"].get(p), ref_of(r, p)
            if p == "bpc.bf16":
                cells += [fmt_ms(x["ms"]), f"{b['ms'] / x['ms']:.2f}"] if x else ["-", "-"]
            else:
                cells += [fmt_ms(x["ms"]), f"{x['ms'] / ref['ms']:.2f}" if ref else "-"] if x else ["-", "-"]
        cells += [f"{g:.1f}", f"{100 * g / pkw:.1f}", f"{b['compile_s']:.2f}", f"{b['rss']:.0f}"]
        cells += [f"{r['res'][p]['rss']:.0f}" if p in r["res"] else "-" for p in peers]
        L.append("| " + " | ".join(cells) + " |")
    L.append("\n## Targets (issue 16: the fastest peer configuration in the same precision, 2 threads)\n")
    for r in rows:
        t16 = TARGETS16.get(r["model"])
        b, bb = r["res"].get("bpc"), r["res"].get("bpc.bf16")
        if not t16 or not b:
            continue
        checks = []
        f32p = [(p, x) for p, x in r["res"].items() if p not in ("bpc", "bpc.bf16") and PRECISION.get(p) == "f32"]
        bfp = [(p, x) for p, x in r["res"].items() if p not in ("bpc", "bpc.bf16") and PRECISION.get(p) == "bf16"]
        if f32p:
            p, x = min(f32p, key=lambda px: px[1]["ms"])
            checks.append((f"f32 >= {t16[0]}x the fastest f32 peer ({p})", x["ms"] / b["ms"] >= t16[0],
                           f"{x['ms'] / b['ms']:.2f}x"))
        if t16[1]:
            g = r["flops"] / (b["ms"] * 1e-3) * 1e-9
            checks.append((f"f32 >= {100 * t16[1]:.0f}% of the widest FMA peak", g >= t16[1] * pkw,
                           f"{100 * g / pkw:.1f}%"))
        if bb and t16[2]:
            checks.append((f"bf16 >= {t16[2]}x bpc's f32", b["ms"] / bb["ms"] >= t16[2], f"{b['ms'] / bb['ms']:.2f}x"))
            allp = f32p + bfp
            if allp:
                p, x = min(allp, key=lambda px: px[1]["ms"])
                checks.append((f"bf16 faster than every peer in any precision ({p} fastest)", x["ms"] > bb["ms"],
                               f"{x['ms'] / bb['ms']:.2f}x"))
        if bb and bfp:
            p, x = min(bfp, key=lambda px: px[1]["ms"])
            checks.append((f"bf16 vs the fastest bf16 peer ({p})", x["ms"] >= bb["ms"], f"{x['ms'] / bb['ms']:.2f}x"))
        L.append(f"- **{r['model']}**: " + "; ".join(f"{n}: {v} ({'met' if ok else 'NOT met'})" for n, ok, v in checks))
    L.append("\n## Targets (issue 6, against Debian's PyTorch eager with the forced kernel)\n")
    for r in rows:
        b, t = r["res"].get("bpc"), TARGETS.get(r["model"])
        if not b or not t:
            continue
        g = r["flops"] / (b["ms"] * 1e-3) * 1e-9
        checks = []
        tv = r["res"].get("torch")
        if tv:
            checks.append((f">= {t[0]}x PyTorch eager", tv["ms"] / b["ms"] >= t[0], f"{tv['ms'] / b['ms']:.2f}x"))
            checks.append(("peak RSS <= PyTorch's", b["rss"] <= tv["rss"], f"{b['rss']:.0f} vs {tv['rss']:.0f} MiB"))
        if t[1]:
            checks.append((f">= {100 * t[1]:.0f}% of the 256-bit peak", g >= t[1] * pk, f"{100 * g / pk:.1f}%"))
        if t[2]:
            checks.append((f"compile < {t[2]:g} s", b["compile_s"] < t[2], f"{b['compile_s']:.2f} s"))
        L.append(f"- **{r['model']}**: " + "; ".join(f"{n}: {v} ({'met' if ok else 'NOT met'})" for n, ok, v in checks))
    if gemm:
        L.append("\n## GEMM (GFLOP/s; bpck = the kernel library's GEMM every matmul calls)\n")
        L.append("bpck % peak: of the 512-bit FMA peak on the avx512 path, else of the 256-bit one; bf16: "
                 "bpck_gemm_bf16 (bf16 operands, f32 sums) and its % of the vdpbf16ps peak. OpenBLAS: sgemm "
                 "with the kernel the environment forces, and with its own choice (OPENBLAS_CORETYPE and "
                 "OPENBLAS_L2_SIZE cleared).\n")
        L.append("| shape | M | N | K | op | threads | bpck | path | % peak | OpenBLAS forced | OpenBLAS own | "
                 "bpck/own | bpck bf16 | bf16 path | bf16 % peak |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for g in gemm:
            p = gemm_peak(g)
            op = ("A^T" if g["ta"] else "A") + ("B^T" if g["tb"] else "B")
            own = g.get("openblas_own", 0.0)
            rat = f"{g['bpck'] / own:.2f}" if own else "-"
            pb = peakbf16.get(g["threads"], 0.0) if g.get("bf16_isa") == "vdpbf16ps" else 0.0
            L.append(f"| {g['label']} | {g['M']} | {g['N']} | {g['K']} | {op} | {g['threads']} | {g['bpck']:.1f} | "
                     f"{g['isa']} | {100 * g['bpck'] / p:.0f} | {g['openblas']:.1f} | {own:.1f} | {rat} | "
                     f"{g.get('bf16', 0.0):.1f} | {g.get('bf16_isa', '-')} | "
                     f"{100 * g.get('bf16', 0.0) / pb:.0f} |" if pb else
                     f"| {g['label']} | {g['M']} | {g['N']} | {g['K']} | {op} | {g['threads']} | {g['bpck']:.1f} | "
                     f"{g['isa']} | {100 * g['bpck'] / p:.0f} | {g['openblas']:.1f} | {own:.1f} | {rat} | "
                     f"{g.get('bf16', 0.0):.1f} | {g.get('bf16_isa', '-')} | - |")
    L.append("\n## Where bpc's step goes (`trainer --profile`, one more run; the five largest kinds)\n")
    L.append("Full tables: profile_<model>.txt. GFLOP/s of a kind: its FLOPs over its time, 2 threads.\n")
    for r in rows:
        if not r.get("prof"):
            continue
        lines = r["prof"].splitlines()
        kinds = lines[lines.index("  by kind:") + 2:] if "  by kind:" in lines else []
        L.append(f"- **{r['model']}** ({lines[0].split(';')[-1].strip()}): " +
                 "; ".join(" ".join(k.split()[5:]) + f" x{k.split()[0]}: {k.split()[1]} ms ({k.split()[2]}%, "
                           f"{k.split()[3]} GFLOP/s)" for k in kinds[:5]))
    with open(os.path.join(out_dir, "bench.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    chart(rows, peers, os.path.join(out_dir, "bench.png"))
    print("\n".join(L))
    log(f"bench: wrote {out_dir}/bench.md, bench.csv, gemm.csv, bench.png")


def fmt_ms(ms):
    return f"{ms:.4f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def chart(rows, peers, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("bench: matplotlib missing; no chart")
        return
    rows = [r for r in rows if "bpc" in r["res"]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    w = 0.8 / max(1, len(peers))
    for i, p in enumerate(peers):
        xs, ys = [], []
        for j, r in enumerate(rows):
            if p in r["res"]:
                xs.append(j + (i - (len(peers) - 1) / 2) * w)
                ys.append(r["res"][p]["ms"] / r["res"]["bpc"]["ms"])
        bars = ax.bar(xs, ys, w, label=p)
        ax.bar_label(bars, labels=[f"{y:.1f}x" for y in ys], fontsize=7)
    ax.axhline(1, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [r["model"] for r in rows])
    ax.set_ylabel("peer ms/step ÷ bpc ms/step (log)")
    ax.set_title("bpc training-step speedup over each peer (above 1: bpc faster)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
