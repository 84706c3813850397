/* peft.h: LoRA adapters in Hugging Face PEFT layout (DESIGN section 7):
 * DIR/adapter_config.json + DIR/adapter_model.safetensors with keys
 * base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight (A (R, K), B (N, R)).
 * What we write loads in PEFT (and vLLM); what PEFT writes loads here. */
#ifndef LEMO_PEFT_H
#define LEMO_PEFT_H

#include "err.h"
#include "model.h"

/* Reads r, lora_alpha, lora_dropout and target_modules from DIR/adapter_config.json. */
int peft_read_spec(const char *dir, LoraSpec *spec, Err *e);
/* Writes the model's LoRA as a PEFT adapter (fp32 tensors) into dir (created if missing). */
int peft_save(const Model *m, const char *dir, const char *base_model, Err *e);
/* Loads DIR's LoRA tensors into the model (its LoraSpec must match the adapter's). */
int peft_load(Model *m, const char *dir, Err *e);

#endif
