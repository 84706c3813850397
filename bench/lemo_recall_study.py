#!/usr/bin/env python3
"""lemo_recall_study.py: how well can LeMo's block scores be predicted on this model, and by what?

A study, not a test: for a Hugging Face Llama model (refmodel-22m by default) on held-out text
windows, per layer, the exact block scores of DESIGN section 8 (A[m,n] = max over the causal
(i, j) of block pair (m, n) of the heads' mean relu(q_i . k_j), pre-RoPE; s[n] = its row plus
column sums over the lower triangle) and the recall at keep 0.4 (the share of the exact top-k
blocks, block 0 aside, that another top-k holds) of:
  random            uniform choice (expects (k-1)/(nb-1))
  knorm_max/mean    the largest / mean pre-RoPE key norm of the block's rows
  pooled            A from the block-mean q and k (one row per block)
  artifact N        the artifact's networks (lemo prepare's: a Q and a K MLP over each
                    head_dim chunk of the block's flattened normed rows, shared across chunks,
                    A^ = sum over chunks of q^ . k^), trained in torch as lemo prepare does
                    (standardised targets, SmoothL1, AdamW 0.9/0.95, lr 1e-3) on N windows
  tokenmax N        a token-level alternative: the same MLP widths applied per row of the
                    block (input C, not B*C), max-pooled over the block's rows
Prints one JSON line per method with the per-layer and mean recall, then a table.
Usage: lemo_recall_study.py MODEL_DIR DATA.jsonl[.gz] [--context 4096] [--train 32,128]
       [--eval 16] [--steps 400] [--eval-data HELDOUT.jsonl]
"""
import argparse, gzip, json, math, sys, time

import torch
import torch.nn as nn
from transformers import AutoModelForCausalLM, AutoTokenizer


def read_jsonl(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rt") as f:
        return [json.loads(l)["text"] for l in f if l.strip()]


def windows(tok, texts, S, limit):
    ids = []
    for t in texts:
        ids += tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        if len(ids) >= S * limit:
            break
    n = min(len(ids) // S, limit)
    return torch.tensor(ids[: n * S]).view(n, S)


@torch.no_grad()
def capture(model, x):
    """Per layer: normed input h (S, C), pre-RoPE q (S, NH, HS), k (S, NKV, HS)."""
    out = {}
    hooks = []
    for l, layer in enumerate(model.model.layers):
        at = layer.self_attn
        hooks.append(layer.input_layernorm.register_forward_hook(lambda m, i, o, l=l: out.setdefault(l, {}).update(h=o[0].float())))
        hooks.append(at.q_proj.register_forward_hook(lambda m, i, o, l=l: out.setdefault(l, {}).update(q=o[0].float())))
        hooks.append(at.k_proj.register_forward_hook(lambda m, i, o, l=l: out.setdefault(l, {}).update(k=o[0].float())))
    model(x[None].cuda())
    for h in hooks:
        h.remove()
    return out


def tri_mask(nb, dev):
    return torch.tril(torch.ones(nb, nb, dtype=torch.bool, device=dev))


@torch.no_grad()
def exact_A(q, k, NH, NKV, HS, B):
    S = q.shape[0]
    nb = S // B
    q = q.view(S, NH, HS).transpose(0, 1)
    k = k.view(S, NKV, HS).transpose(0, 1).repeat_interleave(NH // NKV, 0)
    T = torch.zeros(S, S, device=q.device)
    for h in range(NH):
        T += torch.relu(q[h] @ k[h].T)
    T = T.masked_fill(~torch.tril(torch.ones(S, S, dtype=torch.bool, device=q.device)), float("-inf"))
    A = T.view(nb, B, nb, B).amax(dim=(1, 3)) / NH
    return A.masked_fill(~tri_mask(nb, q.device), 0)


def reduce_scores(A):
    """s[n] = sum_{m>=n} A[m,n] + sum_{m<n} A[n,m] over the lower triangle (A zero above)."""
    Al = torch.tril(A)
    return Al.sum(0) + Al.sum(1) - torch.diagonal(Al)


def topk_set(s, k):
    rest = torch.argsort(s[1:], descending=True)[: k - 1] + 1
    return set(rest.tolist())


def recall(pred, exact, keep=0.4):
    nb = exact.shape[0]
    k = max(1, min(nb, round(keep * nb)))
    e, p = topk_set(exact, k), topk_set(pred, k)
    return len(e & p) / max(1, len(e))


class Artifact(nn.Module):
    def __init__(self, D, HS, h1=128, h2=128, token=False):
        super().__init__()
        self.token = token
        mk = lambda: nn.Sequential(nn.Linear(D, h1, bias=False), nn.ReLU(), nn.Linear(h1, h2, bias=False), nn.ReLU(),
                                   nn.Linear(h2, HS, bias=False))
        self.q, self.k = mk(), mk()

    def forward(self, h, B, HS):
        S, C = h.shape
        nb = S // B
        if self.token:  # per row, max-pooled over the block's rows: (nb, C/HS, HS)
            x = h.view(nb, B, C // HS, HS)
            x = x.permute(0, 2, 1, 3)  # (nb, chunks, B, HS)
            q = self.q(x).amax(2)
            k = self.k(x).amax(2)
        else:  # the artifact's: each chunk is the block's B rows of HS columns, flattened
            x = h.view(nb, B, C // HS, HS).permute(0, 2, 1, 3).reshape(nb, C // HS, B * HS)
            q, k = self.q(x), self.k(x)
        return torch.einsum("mcd,ncd->mn", q, k)


def train_predictor(hs, As, B, HS, steps, token, seed):
    torch.manual_seed(seed)
    C = hs[0].shape[1]
    net = Artifact(HS if token else B * HS, HS, token=token).cuda()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
    nb = As[0].shape[0]
    mask = tri_mask(nb, hs[0].device)
    allv = torch.cat([a[mask] for a in As])
    mu, sd = allv.mean(), allv.std() + 1e-6
    for step in range(steps):
        lr = 1e-3 * min(1.0, (step + 1) / 20)
        for g in opt.param_groups:
            g["lr"] = lr
        i = step % len(hs)
        Ah = net(hs[i], B, HS)
        loss = nn.functional.smooth_l1_loss(Ah[mask], ((As[i] - mu) / sd)[mask])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, float(loss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--eval-data", default="")
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--train", default="32,128")
    ap.add_argument("--eval", type=int, default=16)
    ap.add_argument("--steps", type=int, default=400)
    a = ap.parse_args()
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(a.model)
    try:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32)
    model = model.cuda().eval()
    cfg = model.config
    NH, NKV, C = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size
    HS = getattr(cfg, "head_dim", None) or C // NH
    L, S, B = cfg.num_hidden_layers, a.context, a.block
    ntr = [int(x) for x in a.train.split(",")]
    texts = read_jsonl(a.data)
    tr = windows(tok, texts, S, max(ntr))
    ev = windows(tok, read_jsonl(a.eval_data), S, a.eval) if a.eval_data else windows(tok, texts[::-1], S, a.eval)
    print(f"# {a.model}: {L} layers, C {C}, heads {NH}/{NKV}, HS {HS}; {len(tr)} train and {len(ev)} eval windows "
          f"of {S} ({time.time() - t0:.0f} s)", file=sys.stderr)

    def per_window(x):
        cap = capture(model, x)
        return [(cap[l]["h"], exact_A(cap[l]["q"], cap[l]["k"], NH, NKV, HS, B), cap[l]["k"]) for l in range(L)]

    evd = [per_window(x) for x in ev]
    trd = [per_window(x) for x in tr]
    results = {}

    def score_eval(name, fn):
        rec = []
        for l in range(L):
            r = [recall(fn(l, w[l]), reduce_scores(w[l][1])) for w in evd]
            rec.append(sum(r) / len(r))
        results[name] = rec
        print(json.dumps({"method": name, "recall": [round(x, 4) for x in rec], "mean": round(sum(rec) / L, 4)}))
        sys.stdout.flush()

    g = torch.Generator(device="cpu").manual_seed(7)
    score_eval("random", lambda l, w: torch.rand(w[1].shape[0], generator=g))
    score_eval("knorm_max", lambda l, w: w[2].view(S // B, B, -1).norm(dim=2).amax(1))
    score_eval("knorm_mean", lambda l, w: w[2].view(S // B, B, -1).norm(dim=2).mean(1))

    def pooled(l, w):
        h = w[0]
        at = model.model.layers[l].self_attn
        with torch.no_grad():
            q = at.q_proj(h).view(S // B, B, -1).mean(1).view(S // B, NH, HS)
            k = at.k_proj(h).view(S // B, B, -1).mean(1).view(S // B, NKV, HS).repeat_interleave(NH // NKV, 1)
            A = torch.relu(torch.einsum("mhd,nhd->mnh", q, k)).sum(-1)
        return reduce_scores(torch.tril(A))

    score_eval("pooled", pooled)
    for token in (False, True):
        for n in ntr:
            nets = []
            t1 = time.time()
            for l in range(L):
                net, loss = train_predictor([w[l][0] for w in trd[:n]], [w[l][1] for w in trd[:n]], B, HS, a.steps,
                                            token, 42 + l)
                nets.append(net)
            name = f"{'tokenmax' if token else 'artifact'} {n}"

            def pred(l, w, nets=nets):
                with torch.no_grad():
                    return reduce_scores(torch.tril(nets[l](w[0], B, HS)))

            score_eval(name, pred)
            print(f"# {name}: trained {a.steps} steps per layer in {time.time() - t1:.0f} s, last loss {loss:.4f}",
                  file=sys.stderr)
    nb = S // B
    k = round(0.4 * nb)
    print(f"\n| method (keep 0.4, {nb} blocks of {B}, {len(ev)} held-out windows of {S}) | recall per layer | mean |")
    print("| --- | --- | --- |")
    for name, rec in results.items():
        print(f"| {name} | {' '.join(f'{x:.2f}' for x in rec)} | {sum(rec) / L:.3f} |")
    print(f"random expects {(k - 1) / (nb - 1):.3f}; {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
