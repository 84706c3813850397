#!/usr/bin/env python3
"""passkey.py: passkey retrieval data and its evaluation (LeMo's passkey study, bench/RESULTS.md).

A passkey example hides a 5-digit key at a given depth of long filler text and asks for it at
the end; a token-dropping trainer can fail here where the loss does not show it.

  gen   writes prompt/completion JSONL for fine-tuning: every example is exactly --context
        tokens as `lemo train` packs it (BOS + prompt + completion + EOS), so each training
        window holds one whole example (packing concatenates documents: a split example would
        ask for a key its window does not hold); keys and depths uniform at random, filler cut
        from the given text, phrasing from the training templates.
  eval  scores a model (+ a PEFT adapter, as `lemo train` exports it) densely on held-out
        examples by length and depth: an example is retrieved when greedy decoding gives the
        key, i.e. every key token is the argmax given the ones before (teacher forcing on the
        completion is the same test, in one forward). --variant heldout uses phrasing the
        training templates never use, and filler from the held-out text.
Usage:
  passkey.py gen  --tokenizer DIR --filler TEXT.jsonl --out F.jsonl --context 16384 --n 200 [--seed 1]
  passkey.py eval --model DIR [--adapter DIR] --filler TEXT.jsonl --lengths 4096,8192,16384
                  --depths 0,0.25,0.5,0.75,1 --per 4 [--rope-linear 4] [--variant train|heldout]
"""
import argparse, gzip, json, random, sys

TRAIN_TEMPLATES = [
    ("The pass key is {k}. Remember it. {k} is the pass key.", "What is the pass key? The pass key is", " {k}."),
    ("Important: the secret number is {k}. Keep it in mind: {k}.", "What is the secret number? The secret number is",
     " {k}."),
]
HELDOUT_TEMPLATES = [
    ("Note for later: the access code is {k}. Again, the access code is {k}.",
     "Question: what was the access code? Answer: the access code is", " {k}."),
]


def read_texts(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rt") as f:
        return [json.loads(l)["text"] for l in f if l.strip()]


def filler_words(texts):
    words = []
    for t in texts:
        words += t.split()
    return words


def n_tokens(tok, prompt, completion):
    # BOS + the joined text (data.c tokenizes prompt + completion together) + EOS
    return len(tok(prompt + completion)["input_ids"]) + 1


def make_example(tok, words, rng, target, depth, tmpl, exact):
    """A prompt of filler with the key sentence at `depth` (0 = start, 1 = just before the
    question) and the question at the end; `target` tokens in all (exactly, with `exact`:
    the filler's word count is searched, then single-token " ." pads close the gap)."""
    key = f"{rng.randrange(10000, 100000)}"
    hide, ask, ans = (s.format(k=key) for s in tmpl)
    start = rng.randrange(0, max(1, len(words) - 4 * target))

    def build(n, pad):
        fw = words[start:start + n]
        cut = int(round(depth * len(fw)))
        return " ".join(fw[:cut] + [hide] + fw[cut:]) + " ." * pad + "\n" + ask

    lo, hi = 1, 2 * target  # the most words whose prompt is not longer than the target
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if n_tokens(tok, build(mid, 0), ans) <= target: lo = mid
        else: hi = mid - 1
    have = n_tokens(tok, build(lo, 0), ans)
    if not exact:
        return {"prompt": build(lo, 0), "completion": ans, "key": key, "depth": depth}
    for pad in range(target - have, target - have + 3):
        p = build(lo, pad)
        if n_tokens(tok, p, ans) == target:
            return {"prompt": p, "completion": ans, "key": key, "depth": depth}
    return None


def cmd_gen(a):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    words = filler_words(read_texts(a.filler))
    rng = random.Random(a.seed)
    made = 0
    with open(a.out, "w") as f:
        while made < a.n:
            ex = make_example(tok, words, rng, a.context, rng.random(), rng.choice(TRAIN_TEMPLATES), True)
            if ex is None:
                continue
            f.write(json.dumps({"prompt": ex["prompt"], "completion": ex["completion"]}) + "\n")
            made += 1
    print(f"passkey gen: {made} examples of {a.context} tokens -> {a.out}", file=sys.stderr)


def cmd_eval(a):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(a.model)
    cfg = AutoConfig.from_pretrained(a.model)
    if a.rope_linear > 1:
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
        cfg.rope_parameters = {"rope_type": "linear", "factor": a.rope_linear, "rope_theta": theta}
        cfg.max_position_embeddings = int(cfg.max_position_embeddings * a.rope_linear)
    try:
        model = AutoModelForCausalLM.from_pretrained(a.model, config=cfg, dtype=torch.bfloat16)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(a.model, config=cfg, torch_dtype=torch.bfloat16)
    if a.adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, a.adapter)
    model = model.cuda().eval()
    words = filler_words(read_texts(a.filler))
    tmpls = HELDOUT_TEMPLATES if a.variant == "heldout" else TRAIN_TEMPLATES
    rng = random.Random(a.seed)
    lengths = [int(x) for x in a.lengths.split(",")]
    depths = [float(x) for x in a.depths.split(",")]
    table = {}
    for L in lengths:
        for d in depths:
            hits = 0
            for i in range(a.per):
                ex = make_example(tok, words, rng, L, d, tmpls[i % len(tmpls)], False)
                ids = tok(ex["prompt"] + ex["completion"])["input_ids"]
                pids = tok(ex["prompt"])["input_ids"]
                n_prompt = 0  # where the completion starts: the prompt's tokens that the whole shares
                while n_prompt < len(pids) and ids[n_prompt] == pids[n_prompt]:
                    n_prompt += 1
                key_ids = tok(ex["prompt"] + " " + ex["key"])["input_ids"][n_prompt:]
                with torch.no_grad():
                    logits = model(torch.tensor([ids]).cuda()).logits[0].float()
                pred = logits[n_prompt - 1:n_prompt - 1 + len(key_ids)].argmax(-1).tolist()
                hits += pred == ids[n_prompt:n_prompt + len(key_ids)]
            table[(L, d)] = hits / a.per
            print(json.dumps({"length": L, "depth": d, "accuracy": hits / a.per, "n": a.per}))
            sys.stdout.flush()
    mean = sum(table.values()) / len(table)
    print(json.dumps({"summary": a.adapter or "base", "variant": a.variant, "mean_accuracy": mean,
                      "by_length": {L: sum(table[(L, d)] for d in depths) / len(depths) for L in lengths},
                      "by_depth": {d: sum(table[(L, d)] for L in lengths) / len(lengths) for d in depths}}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--tokenizer", required=True)
    g.add_argument("--filler", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--context", type=int, default=16384)
    g.add_argument("--n", type=int, default=200)
    g.add_argument("--seed", type=int, default=1)
    e = sub.add_parser("eval")
    e.add_argument("--model", required=True)
    e.add_argument("--adapter", default="")
    e.add_argument("--filler", required=True)
    e.add_argument("--lengths", default="4096,8192,16384")
    e.add_argument("--depths", default="0,0.25,0.5,0.75,1")
    e.add_argument("--per", type=int, default=4)
    e.add_argument("--rope-linear", type=float, default=4)
    e.add_argument("--variant", default="heldout", choices=["train", "heldout"])
    e.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    cmd_gen(a) if a.cmd == "gen" else cmd_eval(a)


if __name__ == "__main__":
    main()
