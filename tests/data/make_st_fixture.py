#!/usr/bin/env python3
"""Writes tests/data/fixture.safetensors with the reference `safetensors`
library (pip install safetensors numpy). The file is committed so CI needs no
Python; tests/test_safetensors.c checks exactly these names, shapes and values.
Rerun only if the expectations there change."""
import os

import numpy as np
from safetensors.numpy import save_file

tensors = {
    "w": np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5 - 1.0,  # [[-1,-.5,0],[.5,1,1.5]]
    "b": np.array([1.0 / 3.0, -2.5e-300, 1e300], dtype=np.float64),
    "loss": np.array(0.125, dtype=np.float64),                      # rank 0
    "ids": np.array([[0, -1], [2147483647, -2147483648]], dtype=np.int32),
    "empty": np.zeros((0, 4), dtype=np.float32),                    # zero-size
    "yL.0.w": np.full((1, 2, 1, 2), 7.0, dtype=np.float32),         # rank 4
}
meta = {"step": "42", "seed": "7", "format": "bpc-1", "note": "héllo \"x\"\n"}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixture.safetensors")
save_file(tensors, out, metadata=meta)
print(out, os.path.getsize(out), "bytes")
