"""sdpa_peer.py: the attention peer, torch scaled_dot_product_attention(is_causal=True).

Same shapes and FLOP counting as bench/attn_bench.c (batch 1, S tokens, NH heads,
head size 128 and 64, bf16; fwd = 2*S*S*NH*HS causal, bwd = 2.5x fwd), timed with
CUDA events: median of `iters` runs after warm-up. Backends: torch's default choice
(cuDNN on Hopper) and, for reference, the FlashAttention-2 backend. Prints one JSON
object a line.
Usage: python3 sdpa_peer.py [S=16384] [NH=32] [iters=10]"""
import json
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, iters):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def bench(S, NH, HS, iters, backend):
    g = torch.Generator(device="cuda").manual_seed(0)
    shape = (1, NH, S, HS)
    q, k, v = (torch.rand(shape, device="cuda", generator=g, dtype=torch.bfloat16) * 2 - 1 for _ in range(3))
    q.requires_grad_(), k.requires_grad_(), v.requires_grad_()
    dout = torch.rand(shape, device="cuda", generator=g, dtype=torch.bfloat16) * 2 - 1
    ctx = sdpa_kernel([backend]) if backend is not None else None

    def fwd():
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

    if ctx:
        ctx.__enter__()
    try:
        tf = median_ms(fwd, iters)
        out = fwd()

        def bwd():
            torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)

        tb = median_ms(bwd, iters)
    finally:
        if ctx:
            ctx.__exit__(None, None, None)
    flops = 2.0 * S * S * NH * HS
    return {"bench": "sdpa", "backend": "default" if backend is None else backend.name, "S": S, "NH": NH,
            "HS": HS, "fwd_ms": round(tf, 3), "fwd_tflops": round(flops / tf * 1e-9, 1),
            "bwd_ms": round(tb, 3), "bwd_tflops": round(2.5 * flops / tb * 1e-9, 1)}


def main():
    S = int(sys.argv[1]) if len(sys.argv) > 1 else 16384
    NH = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    iters = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    print(json.dumps({"bench": "device", "name": torch.cuda.get_device_name(), "torch": torch.__version__}))
    for HS in (128, 64):
        for backend in (None, SDPBackend.FLASH_ATTENTION):
            try:
                print(json.dumps(bench(S, NH, HS, iters, backend)), flush=True)
            except Exception as e:  # a backend may refuse a shape: say so and go on
                print(json.dumps({"bench": "sdpa", "backend": str(backend), "HS": HS, "error": str(e)[:200]}))


if __name__ == "__main__":
    main()
