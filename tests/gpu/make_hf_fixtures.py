"""Produces the HF transformers + PEFT parity fixtures that tests/unit/test_hf_parity.c checks.

Run where torch, transformers, peft and tokenizers are installed (the GPU machine), in fp32:
    python3 tests/gpu/make_hf_fixtures.py MODELS_DIR OUT_DIR
For each model it tokenizes a fixed real text with HF tokenizers, builds LoRA r=8 alpha=16 on
all seven targets with deterministic weights (the same formula the C test uses, so no weights
are stored), and saves input ids, the mean next-token loss, the logits at a few positions and
every LoRA gradient to OUT_DIR/hf_<model>.safetensors. Also a loss with linear RoPE scaling.
"""
import math
import sys

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForCausalLM

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TEXT = {
    "stories260K": "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big, red ball. She wanted to play with it, but it was too high. Lily asked "
    "her mom for help.",
    "refmodel-22m": None,  # an RFC excerpt, read from the text given on the command line
}
LENGTH = {"stories260K": 64, "refmodel-22m": 256}


def fill(t, is_b, layer, target):
    rows, cols = t.shape
    i = torch.arange(rows, dtype=torch.float64)[:, None]
    j = torch.arange(cols, dtype=torch.float64)[None, :]
    if is_b:
        v = 0.05 * torch.cos(0.23 * i + 0.19 * j + 0.5 * layer + 0.9 * target)
    else:
        v = 0.05 * torch.sin(0.37 * i + 0.11 * j + 1.3 * layer + 0.7 * target)
    with torch.no_grad():
        t.copy_(v.to(t.dtype))


def run(model_dir, name, text, out_dir, rope=None):
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    ids = tok.encode(text).ids[: LENGTH[name]]
    assert len(ids) == LENGTH[name], (name, len(ids))
    cfg = AutoConfig.from_pretrained(model_dir)
    if rope is not None:
        cfg.rope_parameters = {"rope_type": "linear", "factor": rope, "rope_theta": cfg.rope_parameters["rope_theta"]}
    model = AutoModelForCausalLM.from_pretrained(model_dir, config=cfg, torch_dtype=torch.float32,
                                                 attn_implementation="eager")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
                                             target_modules=TARGETS, task_type="CAUSAL_LM"))
    model.eval()
    for pname, p in model.named_parameters():
        if "lora_" not in pname:
            continue
        layer = int(pname.split(".layers.")[1].split(".")[0])
        target = next(k for k, t in enumerate(TARGETS) if f".{t}." in pname)
        fill(p, ".lora_B." in pname, layer, target)
    x = torch.tensor([ids])
    out = model(input_ids=x, labels=x)
    if rope is not None:
        return out.loss.detach().double()
    out.loss.backward()
    S = len(ids)
    pos = [0, 1, S // 2, S - 1]
    t = {
        "input_ids": torch.tensor(ids, dtype=torch.float32),
        "loss": out.loss.detach().float().reshape(1),
        "logit_positions": torch.tensor(pos, dtype=torch.float32),
        "logits": out.logits[0, pos].detach().float().contiguous(),
    }
    for pname, p in model.named_parameters():
        if "lora_" in pname:
            t["grad." + pname.replace(".default", "")] = p.grad.detach().float().contiguous()
    return t


def main():
    models, out_dir, rfc_text = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
    TEXT["refmodel-22m"] = rfc_text
    torch.manual_seed(0)
    for name in ["stories260K", "refmodel-22m"]:
        d = f"{models}/{name}"
        t = run(d, name, TEXT[name], out_dir)
        if name == "refmodel-22m":
            t["loss_rope_linear2"] = run(d, name, TEXT[name], out_dir, rope=2.0).float().reshape(1)
        save_file(t, f"{out_dir}/hf_{name}.safetensors")
        print(name, "loss", float(t["loss"]), "tensors", len(t))


if __name__ == "__main__":
    main()
