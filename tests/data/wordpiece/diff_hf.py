#!/usr/bin/env python3
"""Differential check of `bpc tokenize` against HF's BertTokenizer (not run by
ctest: about a minute of CPU). Two corpora, written to a temp folder:
  sweep: "a<c>a" for every code point c (no LF, no surrogates), T=8;
  fuzz:  3000 random lines of vocab words, punctuation, accents, combining
         marks, CJK, Hangul, emoji, controls, special tokens; T=8, 64, 512.
Prints the mismatching lines per configuration (the sweep's are the Unicode
table differences REFERENCE 6.4 lists: 568 uncased, 149 cased).

usage: python3 tests/data/wordpiece/diff_hf.py BUILD/bpc
"""
import collections, os, random, subprocess, sys, tempfile, unicodedata
import numpy as np
from safetensors.numpy import load_file
from transformers import BertTokenizer
from transformers.models.bert.tokenization_bert import load_vocab

bpc = sys.argv[1]
V = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vocab.txt")
vocab = load_vocab(V)
tmp = tempfile.mkdtemp()

def compare(name, lines, Ts, show=3):
    path = os.path.join(tmp, name + ".txt")
    open(path, "w", encoding="utf-8", newline="").write("\n".join(lines) + "\n")
    for cased in (False, True):
        tok = BertTokenizer(vocab=vocab, do_lower_case=not cased)
        for T in Ts:
            e = tok(lines, truncation=True, max_length=T, padding="max_length")
            out = os.path.join(tmp, "out.safetensors")
            subprocess.run([bpc, "tokenize", "--vocab", V, "--max-len", str(T)] + (["--cased"] if cased else [])
                           + [path, "-o", out], check=True)
            g = load_file(out)
            bad = np.nonzero((np.array(e["input_ids"]) != g["ids"]).any(axis=1)
                             | (np.array(e["attention_mask"], dtype=np.float32) != g["mask"]).any(axis=1))[0]
            cats = collections.Counter(unicodedata.category(lines[i][1]) for i in bad) if name == "sweep" else {}
            print(f"{name} {'cased' if cased else 'uncased'} T={T}: {len(bad)} of {len(lines)} lines differ {dict(cats)}")
            for i in bad[:show]:
                print(f"  {lines[i]!r:.120}\n    bpc {tok.convert_ids_to_tokens(g['ids'][i].tolist())[:20]}"
                      f"\n    hf  {tok.convert_ids_to_tokens(e['input_ids'][i])[:20]}")

compare("sweep", ["a%sa" % chr(c) for c in range(0x110000) if c != 10 and not 0xD800 <= c <= 0xDFFF], [8])

random.seed(1)
words = [w.replace("##", "") for w in vocab if not w.startswith("[")]
pool = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?'\"-()[]{}#@$%^&*_+=~`|\\/<>;:\t\r") + \
    list("éèêëàâäôöûüçñÅÉÖÜßøæœİıΣσςΟΔАБВгдж中文日本語한국어\u0652\u0301\u0308\u0303\u200d\u200b\u00a0\u3000\u2028"
         "\x01\x7f\ufeff😀👍🏽…—“”«»") + ["[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[mask]"]
lines = []
for _ in range(3000):
    parts = []
    for _ in range(random.randint(0, 40)):
        r = random.random()
        parts.append(random.choice(words) if r < 0.5 else random.choice(pool) if r < 0.8
                     else "".join(random.choice(pool) for _ in range(random.randint(1, 6))))
        if random.random() < 0.6:
            parts.append(" ")
    lines.append("".join(parts))
compare("fuzz", lines, [8, 64, 512])
