"""peer_hf.py: the training peer of DESIGN section 9, HF transformers + PEFT.

Llama-2-7B shape (hidden 4096, 32 layers, 32 heads, FFN 11008, vocab 32000) with
seeded random weights made directly on the GPU in bf16, SDPA attention, gradient
checkpointing (use_reentrant=False), LoRA r=8 alpha=16 dropout 0 on q,k,v,o (PEFT
keeps the adapters in fp32), AdamW lr 1e-4, batch 1. For each context: one warm-up
step, then `steps` timed steps (synchronized); tokens/s = context / median step
time (steps 0: the warm-up step alone, a probe of whether the context fits); peak =
torch.cuda.max_memory_allocated over those steps; device_used = total - free memory of the
device afterwards (the caching allocator's reserve and the CUDA context included). A context
that runs out of memory is reported as such and the larger ones are skipped.
Prints one JSON object a line.
--layers/--vocab shrink the model for a same-shape comparison with a smaller model of ours.
Usage: python3 peer_hf.py [--contexts 4096,16384,32768,65536] [--steps 2] [--layers 32] [--vocab 32000]"""
import argparse
import json
import time

import torch


def build(layers, vocab):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=vocab,
                      max_position_embeddings=262144, rms_norm_eps=1e-5, tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    cfg.use_cache = False
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(prev)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, opt


def step(model, opt, ids):
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def run_context(model, opt, ctx, steps, vocab):
    g = torch.Generator(device="cuda").manual_seed(ctx)
    ids = torch.randint(0, vocab, (1, ctx), device="cuda", generator=g)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    loss = step(model, opt, ids)
    torch.cuda.synchronize()
    ts = [time.perf_counter() - t0]  # steps == 0: the warm-up step alone is timed (a fit probe)
    if steps > 0:
        ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step(model, opt, ids)
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    t = ts[len(ts) // 2]
    free, total = torch.cuda.mem_get_info()
    return {"bench": "peer_hf", "context": ctx, "steps": steps, "step_s": round(t, 3),
            "tokens_per_s": round(ctx / t, 1), "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "device_used_gib": round((total - free) / 2**30, 2), "loss": round(loss.item(), 4)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", default="4096,16384,32768,65536")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=32000)
    a = ap.parse_args()
    print(json.dumps({"bench": "device", "name": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)
    t0 = time.perf_counter()
    model, opt = build(a.layers, a.vocab)
    print(json.dumps({"bench": "peer_hf_build", "seconds": round(time.perf_counter() - t0, 1),
                      "weights_gib": round(torch.cuda.memory_allocated() / 2**30, 2)}), flush=True)
    for ctx in (int(c) for c in a.contexts.split(",")):
        try:
            r = run_context(model, opt, ctx, a.steps, a.vocab)
            r.update(layers=a.layers, vocab=a.vocab)
            print(json.dumps(r), flush=True)
        except torch.cuda.OutOfMemoryError:
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            print(json.dumps({"bench": "peer_hf", "context": ctx, "oom": True}), flush=True)
            break


if __name__ == "__main__":
    main()
