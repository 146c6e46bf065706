#!/usr/bin/env python3
"""ckpt_diff.py A B: the largest relative difference (floor 1e-3) between the
params of two checkpoints (optimizer slots `opt.*` left out). Used by
tests/mpi.sh and tests/mpi_netns.sh."""
import array, json, struct, sys
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h, out = json.loads(b[8:8 + n]), {}
    for k, v in h.items():
        if k != '__metadata__' and not k.startswith('opt.'):
            s, e = v['data_offsets']
            a = array.array({'F32': 'f', 'F64': 'd', 'I32': 'i'}[v['dtype']])
            a.frombytes(b[8 + n + s:8 + n + e])
            out[k] = a
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys()
print('%.3g' % max(abs(x - y) / (abs(x) + 1e-3) for k in a for x, y in zip(a[k], b[k])))
