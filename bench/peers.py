#!/usr/bin/env python3
"""bench/peers.py — the models of bench/models/*.yaml written the way a PyTorch or
JAX user would write them, trained on the same data file with the same
optimizer, and timed step by step.

    python3 peers.py FRAMEWORK MODEL --data F.safetensors --steps N --threads T [-D K=V]...

FRAMEWORK: torch (eager), torch.compile, jax (jit); torch.bf16 and
torch.compile.bf16 run the step under CPU autocast to bfloat16 (PyTorch's
mixed precision: matmuls and convolutions in bf16, params and optimizer f32,
as bpc's --precision bf16). Prints one JSON line:
{"median_ms", "mean_ms", "min_ms", "steps", "warmup", "first_ms", "loss", "version"}.
first_ms is the first step (compilation included for torch.compile and JAX);
the first fifth of the steps (at most 10) is warm-up and not in the median.
Run by bench/bench.py in a process of its own, which reads its peak RSS.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np

DIMS = {
    "xor": dict(B=4, H=8),
    "mlp": dict(B=256, D=784, H=512, K=10),
    "gpt": dict(B=8, T=128, C=256, NH=4, L=4, V=256),
    "convnet": dict(B=64, C1=16, C2=32, K=10),
}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        raw = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        dt = {"F32": np.float32, "I32": np.int32, "F64": np.float64}[v["dtype"]]
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[a:b], dtype=dt).reshape(v["shape"])
    return out


def cosine(step, lr, warmup, total, min_lr):
    """SPEC's schedule: warmup lr*(s+1)/W, then cosine from lr to min_lr."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


def summarize(times, first, loss, version):
    n = len(times)
    w = min(10, n // 5)
    t = sorted(times[w:])
    k = len(t)
    med = t[k // 2] if k % 2 else 0.5 * (t[k // 2 - 1] + t[k // 2])
    return {"median_ms": 1e3 * med, "mean_ms": 1e3 * sum(t) / k, "min_ms": 1e3 * t[0], "steps": k,
            "warmup": w, "first_ms": 1e3 * first, "loss": loss, "version": version}


# ----------------------------------------------------------------------------- PyTorch

def run_torch(model, d, data, steps, threads, compile_, bf16=False):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sched = None

    if model == "xor":
        net = nn.Sequential(nn.Linear(2, d["H"]), nn.Tanh(), nn.Linear(d["H"], 1))
        lossf = nn.BCEWithLogitsLoss()
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        X, Y = torch.from_numpy(data["x"].copy()), torch.from_numpy(data["y"].copy())
        fwd = lambda x, y: lossf(net(x), y)
    elif model == "mlp":
        net = nn.Sequential(nn.Linear(d["D"], d["H"]), nn.ReLU(), nn.Linear(d["H"], d["H"]), nn.ReLU(),
                            nn.Linear(d["H"], d["K"]))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        X, Y = torch.from_numpy(data["x"].copy()), torch.from_numpy(data["y"].astype(np.int64))
        fwd = lambda x, y: F.cross_entropy(net(x), y)
    elif model == "convnet":
        C1, C2, K = d["C1"], d["C2"], d["K"]
        net = nn.Sequential(nn.Conv2d(1, C1, 3, padding=1, bias=False), nn.BatchNorm2d(C1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(C1, C2, 3, padding=1, bias=False), nn.BatchNorm2d(C2), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Dropout(0.25), nn.Linear(7 * 7 * C2, K))
        decay = [p for p in net.parameters() if p.dim() >= 2]
        rest = [p for p in net.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                                lr=2e-3)
        sched = lambda s: cosine(s, 2e-3, 100, steps, 2e-5)
        X = torch.from_numpy(data["x"].copy()).reshape(-1, 1, 28, 28)
        Y = torch.from_numpy(data["y"].astype(np.int64))
        fwd = lambda x, y: F.cross_entropy(net(x), y)
    elif model == "gpt":
        B, T, C, NH, L, V = (d[k] for k in ("B", "T", "C", "NH", "L", "V"))
        sdpa = getattr(F, "scaled_dot_product_attention", None)
        mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
                self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
                self.fc, self.out = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

            def forward(self, x):
                q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
                q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))
                if sdpa is not None:
                    a = sdpa(q, k, v, is_causal=True)
                else:  # torch < 2.0
                    s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // NH)) + mask
                    a = torch.softmax(s, dim=-1) @ v
                x = x + self.proj(a.transpose(1, 2).reshape(B, T, C))
                return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

        class GPT(nn.Module):
            def __init__(self):
                super().__init__()
                self.wte = nn.Parameter(torch.randn(V, C) * 0.02)
                self.wpe = nn.Parameter(torch.randn(T, C) * 0.01)
                self.blocks = nn.ModuleList(Block() for _ in range(L))
                self.lnf = nn.LayerNorm(C)

            def forward(self, idx, tgt):
                x = F.embedding(idx, self.wte) + self.wpe
                for b in self.blocks:
                    x = b(x)
                logits = self.lnf(x) @ self.wte.t()
                return F.cross_entropy(logits.view(-1, V), tgt.view(-1))

        net = GPT()
        decay = [p for p in net.parameters() if p.dim() >= 2]
        rest = [p for p in net.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.95))
        sched = lambda s: cosine(s, 1e-3, 100, steps, 1e-4)
        X = torch.from_numpy(data["tokens"].astype(np.int64))
        Y = torch.from_numpy(data["targets"].astype(np.int64))
        fwd = lambda x, y: net(x, y)
    else:
        raise SystemExit(f"unknown model {model}")

    net.train()
    if compile_:
        fwd = torch.compile(fwd)
    B = d["B"]
    nb = X.shape[0] // B
    times, loss = [], float("nan")
    first = None
    for s in range(steps):
        i = s % nb
        x, y = X[i * B:(i + 1) * B], Y[i * B:(i + 1) * B]
        t0 = time.perf_counter()
        if sched:
            for g in opt.param_groups:
                g["lr"] = sched(s)
        opt.zero_grad(set_to_none=True)
        if bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                l = fwd(x, y)
        else:
            l = fwd(x, y)
        l.backward()
        if model == "gpt":
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        loss = l.item()
        dt = time.perf_counter() - t0
        if first is None:
            first = dt
        times.append(dt)
    name = ("torch.compile" if compile_ else "torch") + (" bf16" if bf16 else "")
    return summarize(times, first, loss, f"{name} {torch.__version__}")


# ----------------------------------------------------------------------------- JAX

def run_jax(model, d, data, steps, threads):
    import jax
    import jax.numpy as jnp
    import optax

    key = jax.random.PRNGKey(0)
    keys = iter(jax.random.split(key, 64))

    def dense(i, o, scale=None):
        s = scale if scale is not None else 1 / math.sqrt(i)
        return {"w": jax.random.uniform(next(keys), (i, o), jnp.float32, -s, s), "b": jnp.zeros((o,), jnp.float32)}

    state = {}
    mask_fn = lambda p: jax.tree_util.tree_map(lambda x: x.ndim >= 2, p)
    clip = None
    if model == "xor":
        params = {"l1": dense(2, d["H"]), "l2": dense(d["H"], 1)}

        def loss_fn(p, st, x, y, rng):
            z = jnp.tanh(x @ p["l1"]["w"] + p["l1"]["b"]) @ p["l2"]["w"] + p["l2"]["b"]
            return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z)))), st
        tx = optax.adam(0.05)
        X, Y = data["x"], data["y"]
    elif model == "mlp":
        params = {"l1": dense(d["D"], d["H"]), "l2": dense(d["H"], d["H"]), "l3": dense(d["H"], d["K"])}

        def loss_fn(p, st, x, y, rng):
            h = jax.nn.relu(x @ p["l1"]["w"] + p["l1"]["b"])
            h = jax.nn.relu(h @ p["l2"]["w"] + p["l2"]["b"])
            z = h @ p["l3"]["w"] + p["l3"]["b"]
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, y)), st
        tx = optax.adam(1e-3)
        X, Y = data["x"], data["y"]
    elif model == "convnet":
        C1, C2, K = d["C1"], d["C2"], d["K"]
        params = {"k1": jax.random.normal(next(keys), (3, 3, 1, C1)) * math.sqrt(2 / 9),
                  "g1": jnp.ones(C1), "e1": jnp.zeros(C1),
                  "k2": jax.random.normal(next(keys), (3, 3, C1, C2)) * math.sqrt(2 / (9 * C1)),
                  "g2": jnp.ones(C2), "e2": jnp.zeros(C2), "out": dense(7 * 7 * C2, K)}
        state = {"m1": jnp.zeros(C1), "v1": jnp.ones(C1), "m2": jnp.zeros(C2), "v2": jnp.ones(C2)}
        dn = ("NHWC", "HWIO", "NHWC")

        def bn(x, g, e, m, v):
            mean, var = jnp.mean(x, (0, 1, 2)), jnp.var(x, (0, 1, 2))
            n = x.size // x.shape[-1]
            y = (x - mean) * jax.lax.rsqrt(var + 1e-5) * g + e
            return y, 0.9 * m + 0.1 * mean, 0.9 * v + 0.1 * var * n / (n - 1)

        def pool(x):
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

        def loss_fn(p, st, x, y, rng):
            x = x.reshape(-1, 28, 28, 1)
            h = jax.lax.conv_general_dilated(x, p["k1"], (1, 1), "SAME", dimension_numbers=dn)
            h, m1, v1 = bn(h, p["g1"], p["e1"], st["m1"], st["v1"])
            h = pool(jax.nn.relu(h))
            h = jax.lax.conv_general_dilated(h, p["k2"], (1, 1), "SAME", dimension_numbers=dn)
            h, m2, v2 = bn(h, p["g2"], p["e2"], st["m2"], st["v2"])
            h = pool(jax.nn.relu(h)).reshape(x.shape[0], -1)
            keep = jax.random.bernoulli(rng, 0.75, h.shape)
            h = jnp.where(keep, h / 0.75, 0)
            z = h @ p["out"]["w"] + p["out"]["b"]
            st = {"m1": m1, "v1": v1, "m2": m2, "v2": v2}
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, y)), st
        sched = optax.warmup_cosine_decay_schedule(2e-4 / 10, 2e-3, 100, max(steps, 101), 2e-5)
        tx = optax.adamw(sched, weight_decay=0.01, mask=mask_fn)
        X, Y = data["x"], data["y"]
    elif model == "gpt":
        B, T, C, NH, L, V = (d[k] for k in ("B", "T", "C", "NH", "L", "V"))
        hs = C // NH

        def blk():
            return {"ln1_g": jnp.ones(C), "ln1_b": jnp.zeros(C), "qkv": dense(C, 3 * C, 0.02),
                    "proj": dense(C, C, 0.02), "ln2_g": jnp.ones(C), "ln2_b": jnp.zeros(C),
                    "fc": dense(C, 4 * C, 0.02), "out": dense(4 * C, C, 0.02)}
        params = {"wte": jax.random.normal(next(keys), (V, C)) * 0.02,
                  "wpe": jax.random.normal(next(keys), (T, C)) * 0.01,
                  "blocks": [blk() for _ in range(L)], "lnf_g": jnp.ones(C), "lnf_b": jnp.zeros(C)}

        def ln(x, g, b):
            m = jnp.mean(x, -1, keepdims=True)
            v = jnp.mean(jnp.square(x - m), -1, keepdims=True)
            return (x - m) * jax.lax.rsqrt(v + 1e-5) * g + b

        def loss_fn(p, st, idx, tgt, rng):
            x = p["wte"][idx] + p["wpe"]
            for b in p["blocks"]:
                qkv = ln(x, b["ln1_g"], b["ln1_b"]) @ b["qkv"]["w"] + b["qkv"]["b"]
                q, k, v = (t.reshape(B, T, NH, hs) for t in jnp.split(qkv, 3, axis=-1))
                a = jax.nn.dot_product_attention(q, k, v, is_causal=True).reshape(B, T, C)
                x = x + a @ b["proj"]["w"] + b["proj"]["b"]
                h = jax.nn.gelu(ln(x, b["ln2_g"], b["ln2_b"]) @ b["fc"]["w"] + b["fc"]["b"], approximate=True)
                x = x + h @ b["out"]["w"] + b["out"]["b"]
            z = ln(x, p["lnf_g"], p["lnf_b"]) @ p["wte"].T
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, tgt)), st
        sched = optax.warmup_cosine_decay_schedule(1e-5, 1e-3, 100, max(steps, 101), 1e-4)
        tx = optax.chain(optax.clip_by_global_norm(1.0),
                         optax.adamw(sched, b1=0.9, b2=0.95, weight_decay=0.1, mask=mask_fn))
        X, Y = data["tokens"], data["targets"]
    else:
        raise SystemExit(f"unknown model {model}")

    opt_state = tx.init(params)

    def step(p, o, st, x, y, rng):
        (l, st), g = jax.value_and_grad(loss_fn, has_aux=True)(p, st, x, y, rng)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, st, l
    step = jax.jit(step, donate_argnums=(0, 1, 2))

    B = d["B"]
    nb = X.shape[0] // B
    Xs = [jnp.asarray(X[i * B:(i + 1) * B]) for i in range(nb)]
    Ys = [jnp.asarray(Y[i * B:(i + 1) * B]) for i in range(nb)]
    times, first, loss = [], None, float("nan")
    rng = jax.random.PRNGKey(1)
    for s in range(steps):
        i = s % nb
        t0 = time.perf_counter()
        params, opt_state, state, l = step(params, opt_state, state, Xs[i], Ys[i], jax.random.fold_in(rng, s))
        loss = float(l)
        dt = time.perf_counter() - t0
        first = dt if first is None else first
        times.append(dt)
    return summarize(times, first, loss, f"jax {jax.__version__}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("framework", choices=["torch", "torch.compile", "torch.bf16", "torch.compile.bf16", "jax"])
    ap.add_argument("model", choices=sorted(DIMS))
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-D", action="append", default=[])
    a = ap.parse_args()
    d = dict(DIMS[a.model])
    for kv in a.D:
        k, v = kv.split("=")
        d[k] = int(v)
    data = read_safetensors(a.data)
    if a.framework == "jax":
        r = run_jax(a.model, d, data, a.steps, a.threads)
    else:
        r = run_torch(a.model, d, data, a.steps, a.threads, a.framework.startswith("torch.compile"),
                      a.framework.endswith(".bf16"))
    print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
