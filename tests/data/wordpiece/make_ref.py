#!/usr/bin/env python3
"""Regenerates ref.safetensors, the reference test_rt_wordpiece and test_cli
compare `bpc tokenize` with: sample.txt (one sample per line, split on b"\\n"
with one trailing "\\r" dropped, exactly as bpc reads it) tokenized by Hugging
Face's BertTokenizer with vocab.txt, for T=16 and T=128 uncased and T=128 cased.

transformers 5.x: BertTokenizer is the tokenizers-library (Rust) pipeline;
the old pure-Python one survives as BertTokenizerLegacy. Both are run and
every line where they disagree is listed; the reference is BertTokenizer.

usage: python3 tests/data/wordpiece/make_ref.py   (writes beside this file)
"""
import os
import sys

import numpy as np
from safetensors.numpy import save_file
from transformers import BertTokenizer
from transformers.models.bert.tokenization_bert import load_vocab

here = os.path.dirname(os.path.abspath(__file__))
vocab_path = os.path.join(here, "vocab.txt")
vocab = load_vocab(vocab_path)
try:
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
except ImportError:
    BertTokenizerLegacy = None

raw = open(os.path.join(here, "sample.txt"), "rb").read()
parts = raw.split(b"\n")
if parts and parts[-1] == b"":
    parts.pop()
lines = [(p[:-1] if p.endswith(b"\r") else p).decode("utf-8") for p in parts]

out = {}
for name, lower, T in [("uncased16", True, 16), ("uncased128", True, 128), ("cased128", False, 128)]:
    tok = BertTokenizer(vocab=vocab, do_lower_case=lower)
    enc = tok(lines, truncation=True, max_length=T, padding="max_length")
    ids = np.array(enc["input_ids"], dtype=np.int32)
    mask = np.array(enc["attention_mask"], dtype=np.float32)
    assert ids.shape == (len(lines), T)
    out[name + ".ids"] = ids
    out[name + ".mask"] = mask
    if BertTokenizerLegacy is not None:
        slow = BertTokenizerLegacy(vocab_path, do_lower_case=lower)
        senc = slow(lines, truncation=True, max_length=T, padding="max_length")
        for i, (a, b) in enumerate(zip(enc["input_ids"], senc["input_ids"])):
            if a != b:
                print(f"{name}: line {i + 1} {lines[i]!r}: fast and legacy differ:\n"
                      f"  fast   {tok.convert_ids_to_tokens(a)}\n  legacy {slow.convert_ids_to_tokens(b)}",
                      file=sys.stderr)
save_file(out, os.path.join(here, "ref.safetensors"), metadata={"lines": str(len(lines))})
print(f"{len(lines)} lines -> ref.safetensors")
