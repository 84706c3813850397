"""Checks that an adapter written by `lemo train` loads in HF PEFT and reproduces our logits.

    python3 tests/gpu/check_peft_adapter.py MODEL_DIR ADAPTER_DIR TEXT_FILE OUR_LOGITS.safetensors
OUR_LOGITS comes from `lemo eval --model MODEL_DIR --adapter ADAPTER_DIR --text TEXT_FILE
--context S --save-logits OUR_LOGITS`. Prints the largest logit difference and the losses, and
exits 1 if they disagree beyond fp32 noise. Run where torch, transformers and peft are installed.
"""
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

model_dir, adapter_dir, text_file, ours_file = sys.argv[1:5]
ours = load_file(ours_file)["logits"].double()
S = ours.shape[0]
ids = Tokenizer.from_file(f"{model_dir}/tokenizer.json").encode(open(text_file).read()).ids[:S]
base = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
model = PeftModel.from_pretrained(base, adapter_dir)
model.eval()
x = torch.tensor([ids])
with torch.no_grad():
    out = model(input_ids=x, labels=x)
theirs = out.logits[0].double()
diff = (theirs - ours).abs().max().item()
lora_effect = None
with torch.no_grad(), model.disable_adapter():
    lora_effect = (model(input_ids=x).logits[0].double() - theirs).abs().max().item()
ce = torch.nn.functional.cross_entropy(ours[:-1], x[0, 1:]).item()
print(f"PEFT loaded {adapter_dir}: max |logit ours - PEFT| = {diff:.3g} over {S}x{ours.shape[1]}; "
      f"loss PEFT {out.loss.item():.6f} ours {ce:.6f}; the adapter moves logits by up to {lora_effect:.3g}")
ok = diff < 1e-3 and abs(out.loss.item() - ce) < 1e-4 and lora_effect > 10 * diff
print("PEFT adapter check:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
