#!/usr/bin/env bash
# Runs ours and the peer on this GPU in one go and prints the ratios (DESIGN section 9).
#   attention: (BENCH_ATTN=0 to skip) BUILD/bench/attn_bench (our flash attention through the
#              Backend table, plus one cuBLAS GEMM as the device's matrix ceiling) against torch
#              scaled_dot_product_attention (bench/sdpa_peer.py) at each S of BENCH_ATTN_S
#              (default 16384,65536), 32 heads, head size 128 and 64.
#   training:  (BENCH_TRAIN=0 to skip) the full Llama-2-7B shape (32 layers, hidden 4096, 32
#              heads, FFN 11008, vocab 32000, seeded random bf16 weights written by
#              `train_bench make-model` into BENCH_7B_DIR, default /dev/shm/lemo-bench-7b).
#              Ours: BUILD/bench/train_bench (model_load + model_step, what `lemo train` runs a
#              step) with layer checkpoints on the device (recompute) at BENCH_CONTEXTS
#              (default 4096,16384,32768,65536, BENCH_STEPS (1) timed steps after a warm-up),
#              offloaded to host memory at BENCH_OFFLOAD_CONTEXTS (default the same, one timed
#              step), and offloaded with the attention outputs too (memory.offload_attention)
#              at BENCH_OFFLOAD_ATT_CONTEXTS (default the same), and policies per layer,
#              BENCH_MIXED_POLICIES (comma-separated train_bench policies, default auto: what
#              memory.auto picks on this card; e.g. offload-att+keep4: the last 4 layers keep
#              their activations) at BENCH_MIXED_CONTEXTS (default 4096,16384,65536). Peer: HF transformers + PEFT (bench/peer_hf.py) at BENCH_CONTEXTS, the
#              same steps. Ours also reports what `lemo estimate` predicts. All this takes
#              about 9 minutes on an H100.
#              Largest context (BENCH_FIT=1): one step at each of BENCH_FIT_OURS (checkpoints
#              on the device, default 98304,131072), BENCH_FIT_OFFLOAD (204800,262144) and
#              BENCH_FIT_PEER (90112,98304,106496): ascending lists, empty skips, stopping at
#              the first that does not fit. These steps take minutes each (204,800 tokens
#              about 4 min on an H100): about 20 more minutes. Without them the summary gives
#              the largest contexts by estimate: ours from `lemo estimate` (train_bench's
#              est_max_context), the peer by extending its measured peaks to 96% of the card.
#   LeMo:      (BENCH_LEMO_CONTEXTS, default 16384,32768,65536; empty skips) the same 7B step with
#              LeMo at the default schedule, for each of BENCH_LEMO_SCORES (default random,exact)
#              and BENCH_LEMO_POLICIES (default recompute,offload-att,auto), one timed step; then
#              at BENCH_PROFILE_CONTEXT (default 65536) a per-layer breakdown (train_bench's
#              BENCH_PROFILE) of a dense and a sparse layer, dense and with LeMo random.
#   model:     (BENCH_MODEL=1 to run) a same-shape training comparison at reduced depth: a
#              random Llama-2-7B-width model of BENCH_LAYERS (default 4) layers from
#              `lemo init-model` (its small vocabulary), trained by `lemo train` on the GPU
#              (LoRA r=8 alpha=16 on q,k,v,o, checkpointing) at BENCH_MODEL_CONTEXTS
#              (default 4096,16384), against the HF peer built with the same layers and
#              vocabulary. Text: BENCH_TEXT (JSONL of {"text"} documents), else the shared
#              data set beside the checkout, else generated words.
# Raw JSON lines go to BENCH_OUT (default BUILD/bench-results).
# Usage: bench/run.sh [BUILD]
set -u -o pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-$build/bench-results}
mkdir -p "$out"
NH=${BENCH_NH:-32} ITERS=${BENCH_ITERS:-5}
export PYTHONUNBUFFERED=1

if [ "${BENCH_ATTN:-1}" != 0 ]; then
    : > "$out/ours.jsonl"; : > "$out/sdpa.jsonl"
    for S in $(echo "${BENCH_ATTN_S:-16384,65536}" | tr , ' '); do
        "$build/bench/attn_bench" "$S" "$NH" "$ITERS" | tee -a "$out/ours.jsonl" || { echo "bench: attn_bench failed"; exit 1; }
        python3 bench/sdpa_peer.py "$S" "$NH" "$ITERS" | tee -a "$out/sdpa.jsonl" || echo "bench: sdpa peer failed"
    done
fi

if [ "${BENCH_TRAIN:-1}" != 0 ]; then
    mdir=${BENCH_7B_DIR:-/dev/shm/lemo-bench-7b} tb="$build/bench/train_bench"
    ctxs=${BENCH_CONTEXTS-4096,16384,32768,65536}
    octxs=${BENCH_OFFLOAD_CONTEXTS-$ctxs}
    actxs=${BENCH_OFFLOAD_ATT_CONTEXTS-$octxs}
    if [ ! -f "$mdir/config.json" ]; then
        "$tb" make-model "$mdir" | tee "$out/make_model.jsonl" || { echo "bench: make-model failed"; exit 1; }
    fi
    : > "$out/ours_train.jsonl"; : > "$out/peer_hf.jsonl"; : > "$out/fit.jsonl"
    [ -n "$ctxs" ] && { "$tb" run "$mdir" recompute "$ctxs" "${BENCH_STEPS:-1}" | tee -a "$out/ours_train.jsonl" \
        || echo "bench: train_bench (recompute) failed"; }
    [ -n "$octxs" ] && { "$tb" run "$mdir" offload "$octxs" "${BENCH_OFFLOAD_STEPS:-1}" | tee -a "$out/ours_train.jsonl" \
        || echo "bench: train_bench (offload) failed"; }
    [ -n "$actxs" ] && { "$tb" run "$mdir" offload-att "$actxs" "${BENCH_OFFLOAD_STEPS:-1}" | tee -a "$out/ours_train.jsonl" \
        || echo "bench: train_bench (offload-att) failed"; }
    # policies per layer (memory.layers, memory.auto)
    mctxs=${BENCH_MIXED_CONTEXTS-4096,16384,65536}
    for mpol in $([ -n "$mctxs" ] && echo "${BENCH_MIXED_POLICIES:-auto}" | tr , ' '); do
        "$tb" run "$mdir" "$mpol" "$mctxs" "${BENCH_OFFLOAD_STEPS:-1}" | tee -a "$out/ours_train.jsonl" \
            || echo "bench: train_bench ($mpol) failed"
    done
    # LeMo at the default schedule (rows marked "lemo"), and the per-layer breakdown
    : > "$out/ours_lemo.jsonl"
    lctxs=${BENCH_LEMO_CONTEXTS-16384,32768,65536}
    for sc in $([ -n "$lctxs" ] && echo "${BENCH_LEMO_SCORES:-random,exact}" | tr , ' '); do
        for lpol in $(echo "${BENCH_LEMO_POLICIES:-recompute,offload-att,auto}" | tr , ' '); do
            BENCH_LEMO=$sc "$tb" run "$mdir" "$lpol" "$lctxs" 1 | tee -a "$out/ours_lemo.jsonl" \
                || echo "bench: train_bench ($lpol, LeMo $sc) failed"
        done
    done
    pctx=${BENCH_PROFILE_CONTEXT-65536}
    if [ -n "$pctx" ]; then
        BENCH_PROFILE=1 "$tb" run "$mdir" offload-att "$pctx" 1 | grep '"bench":"layers"' | tee -a "$out/ours_lemo.jsonl"
        BENCH_PROFILE=1 BENCH_LEMO=random "$tb" run "$mdir" offload-att "$pctx" 1 | grep '"bench":"layers"' | tee -a "$out/ours_lemo.jsonl"
    fi
    [ -n "$ctxs" ] && { python3 bench/peer_hf.py --contexts "$ctxs" --steps "${BENCH_STEPS:-1}" | tee "$out/peer_hf.jsonl" \
        || echo "bench: HF peer failed"; }
    # largest context: one step a candidate, in its own process (a device fault ends the process)
    [ "${BENCH_FIT:-0}" = 1 ] || echo "bench: largest-context probes skipped (BENCH_FIT=1 runs them)"
    for pol in $([ "${BENCH_FIT:-0}" = 1 ] && echo recompute offload); do
        list=${BENCH_FIT_OURS-98304,131072}
        [ $pol = offload ] && list=${BENCH_FIT_OFFLOAD-204800,262144}
        for ctx in $(echo "$list" | tr , ' '); do
            line=$("$tb" run "$mdir" $pol "$ctx" 0 | grep '"bench":"ours"')
            [ -n "$line" ] || line="{\"bench\":\"ours\",\"context\":$ctx,\"policy\":\"$pol\",\"oom\":true,\"error\":\"device fault\"}"
            echo "$line" | sed 's/"bench":"ours"/"bench":"ours_fit"/' | tee -a "$out/fit.jsonl"
            case "$line" in *'"oom":true'*) break ;; esac
        done
    done
    fitpeer=${BENCH_FIT_PEER-90112,98304,106496}
    if [ "${BENCH_FIT:-0}" = 1 ] && [ -n "$fitpeer" ]; then
        python3 bench/peer_hf.py --contexts "$fitpeer" --steps 0 | sed 's/"bench": "peer_hf"/"bench": "peer_fit"/' \
            | tee -a "$out/fit.jsonl" || echo "bench: HF peer fit probe failed"
    fi
fi

if [ "${BENCH_MODEL:-0}" != 0 ]; then
    layers=${BENCH_LAYERS:-4} mdir=${BENCH_MODEL_DIR:-/tmp/lemo-bench-model}
    if [ -z "${BENCH_TEXT:-}" ]; then
        BENCH_TEXT="$out/text.jsonl"
        if [ -f ../shared/data/finetune.jsonl.gz ]; then
            zcat ../shared/data/finetune.jsonl.gz | head -n 40 > "$BENCH_TEXT"
        else
            python3 -c "
import json, random
r = random.Random(0); w = 'the of and to in is that for it as with was on be by at this from or have an are not'.split()
for d in range(40): print(json.dumps({'text': ' '.join(r.choice(w) for _ in range(40000))}))" > "$BENCH_TEXT"
        fi
    fi
    "$build/lemo" init-model tiny "$mdir" --layers "$layers" --hidden 4096 --heads 32 --kv-heads 32 \
        --ffn 11008 --max-pos 131072 --dtype bf16 --force >/dev/null || { echo "bench: init-model failed"; exit 1; }
    vocab=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$mdir/config.json")
    : > "$out/ours_model.jsonl"
    for ctx in $(echo "${BENCH_MODEL_CONTEXTS:-4096,16384}" | tr , ' '); do
        cfg="$out/train_$ctx.json"
        printf '{"model":"%s","train_file":"%s","eval_file":"%s","output_dir":"%s","context_length":%d,"max_steps":4,"eval_windows":1,"device":"cuda","lora":{"r":8,"alpha":16,"dropout":0,"target_modules":["q_proj","k_proj","v_proj","o_proj"]}}\n' \
            "$mdir" "$BENCH_TEXT" "$BENCH_TEXT" "/tmp/lemo-bench-out-$ctx" "$ctx" > "$cfg"
        "$build/lemo" train "$cfg" 2>/dev/null | grep '"type":"step"' | \
            python3 -c "import json,sys; r=[json.loads(l) for l in sys.stdin]; t=sorted(x['tokens_per_s'] for x in r[1:]) or [0]; print(json.dumps({'bench':'ours_model','context':$ctx,'layers':$layers,'vocab':$vocab,'steps':len(r),'tokens_per_s':round(t[len(t)//2],1),'mem_gib':round(max([x.get('gpu_mem_bytes',x.get('mem_bytes',0)) for x in r] or [0])/2**30,2)}))" \
            | tee -a "$out/ours_model.jsonl"
    done
    python3 bench/peer_hf.py --layers "$layers" --vocab "$vocab" --contexts "${BENCH_MODEL_CONTEXTS:-4096,16384}" \
        | tee "$out/peer_model.jsonl" || echo "bench: HF peer (same shape) failed"
fi

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name)
    if not os.path.exists(p):
        return []
    rows = []
    for line in open(p):
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows
ours, sdpa, hf = load("ours.jsonl"), load("sdpa.jsonl"), load("peer_hf.jsonl")
om, pm = load("ours_model.jsonl"), load("peer_model.jsonl")
tr, fit = load("ours_train.jsonl"), load("fit.jsonl")
lm = load("ours_lemo.jsonl")
dev = next((r["name"] for r in ours + tr + hf if r.get("bench") == "device"), "?")
print(f"\n== {dev} ==")
for r in ours:
    if r.get("bench") == "matmul":
        print(f"cuBLAS bf16 GEMM {r['n']}^3: {r['tflops']} TFLOP/s")
if any(r.get("bench") == "attention" for r in ours):
    print(f"{'attention (TFLOP/s)':<26}"
          f"{'ours fwd':>9}{'cuDNN':>8}{'FA2':>8}{'ratio':>7} |{'ours bwd':>9}{'cuDNN':>8}{'FA2':>8}{'ratio':>7}")
    for r in ours:
        if r.get("bench") != "attention":
            continue
        same = lambda x, b: x.get("HS") == r["HS"] and x.get("S") == r["S"] and x.get("backend") == b and "fwd_tflops" in x
        d = next((x for x in sdpa if same(x, "default")), {})
        f = next((x for x in sdpa if same(x, "FLASH_ATTENTION")), {})
        rf = r["fwd_tflops"] / d["fwd_tflops"] if d else float("nan")
        rb = r["bwd_tflops"] / d["bwd_tflops"] if d else float("nan")
        print(f"{'S=%d HS=%d NH=%d' % (r['S'], r['HS'], r['NH']):<26}{r['fwd_tflops']:>9}{d.get('fwd_tflops', '-'):>8}"
              f"{f.get('fwd_tflops', '-'):>8}{rf:>7.2f} |{r['bwd_tflops']:>9}{d.get('bwd_tflops', '-'):>8}"
              f"{f.get('bwd_tflops', '-'):>8}{rb:>7.2f}")
# model FLOPs of one training step (no recomputation counted): forward + input gradients of
# every linear layer, attention forward (causal half) and backward (2x), LM head both ways;
# MFU = that / step time / 989.4 TFLOP/s (dense bf16 peak of the H100 SXM and the H200)
def model_flops(S, L=32, C=4096, F=11008, V=32000):
    lin = 2 * S * (4 * C * C + 3 * C * F) * L
    att = 2 * S * S * C * L
    return 2 * lin + 3 * att + 2 * (2 * S * C * V)
def mfu(r):
    return model_flops(r["context"]) / r["step_s"] / 989.4e12
rec = {r["context"]: r for r in tr if r.get("bench") == "ours" and r.get("policy") == "recompute" and not r.get("oom")}
off = {r["context"]: r for r in tr if r.get("bench") == "ours" and r.get("policy") == "offload" and not r.get("oom")}
peer = {r["context"]: r for r in hf if r.get("bench") == "peer_hf" and not r.get("oom")}
if rec or peer:
    print("\nLlama-2-7B shape, LoRA r=8 a=16 q,k,v,o, bf16, batch 1 (GiB: peak of allocated device memory)")
    print(f"{'context':>8} | {'ours tok/s':>10} {'peer':>8} {'ratio':>6} | {'ours GiB':>8} {'peer':>6} {'ratio':>6} |"
          f" {'offload GiB':>11} {'ratio':>6} {'tok/s':>7} | {'MFU ours':>8} {'peer':>5} | {'est GiB':>7} {'used':>6} {'err':>6}")
    for c in sorted(set(rec) | set(peer) | set(off)):
        o, p, f = rec.get(c), peer.get(c), off.get(c)
        g = lambda d, k, fmt: format(d[k], fmt) if d else "-"
        rt = f"{o['tokens_per_s'] / p['tokens_per_s']:.2f}" if o and p else "-"
        rm = f"{o['peak_gib'] / p['peak_gib']:.2f}" if o and p else "-"
        rf = f"{f['peak_gib'] / p['peak_gib']:.2f}" if f and p else "-"
        err = f"{(o['est_peak_gib'] / o['device_used_gib'] - 1) * 100:+.1f}%" if o else "-"
        print(f"{c:>8} | {g(o, 'tokens_per_s', '.0f'):>10} {g(p, 'tokens_per_s', '.0f'):>8} {rt:>6} |"
              f" {g(o, 'peak_gib', '.1f'):>8} {g(p, 'peak_gib', '.1f'):>6} {rm:>6} | {g(f, 'peak_gib', '.1f'):>11} {rf:>6}"
              f" {g(f, 'tokens_per_s', '.0f'):>7} | {(format(mfu(o), '.1%') if o else '-'):>8}"
              f" {(format(mfu(p), '.1%') if p else '-'):>5} | {g(o, 'est_peak_gib', '.1f'):>7} {g(o, 'device_used_gib', '.1f'):>6} {err:>6}")
    titles = {"offload-att": "offloaded with the attention outputs (memory.offload_attention: the recompute skips attention)"}
    for pol in dict.fromkeys(r["policy"] for r in tr if r.get("bench") == "ours" and not r.get("oom")):
        if pol in ("recompute", "offload"):
            continue
        rows = {r["context"]: r for r in tr if r.get("bench") == "ours" and r.get("policy") == pol and not r.get("oom")}
        print("\n" + titles.get(pol, f"policy {pol} (memory.layers: +keepN or auto's kept layers keep their activations)"))
        print(f"{'context':>8} | {'tok/s':>7} {'peer':>7} {'ratio':>6} | {'GiB':>6} {'peer':>6} {'ratio':>6} | {'host GiB':>8} | {'est GiB':>7} {'used':>6} | {'kept, base':>22}")
        for c in sorted(rows):
            f, p = rows[c], peer.get(c)
            rt = f"{f['tokens_per_s'] / p['tokens_per_s']:.2f}" if p else "-"
            rm = f"{f['peak_gib'] / p['peak_gib']:.2f}" if p else "-"
            print(f"{c:>8} | {f['tokens_per_s']:>7.0f} {(format(p['tokens_per_s'], '.0f') if p else '-'):>7} {rt:>6} |"
                  f" {f['peak_gib']:>6.1f} {(format(p['peak_gib'], '.1f') if p else '-'):>6} {rm:>6} | {f['host_gib']:>8.1f} |"
                  f" {f['est_peak_gib']:>7.1f} {f['device_used_gib']:>6.1f} | {str(f.get('kept_layers', '-')) + ', ' + f.get('base', '-'):>22}")
    # largest context without the probes: ours from `lemo estimate` (its peak is within 0.3% of
    # the measured one), the peer by extending its measured peaks linearly to 96% of the card
    # (it fit 102,400 tokens in 75.9 of 79.2 GiB on an H100, bench/RESULTS.md)
    total = next((r.get("total_gib") for r in tr if r.get("bench") == "device"), None)
    est_rec = max((r.get("est_max_context", 0) for r in rec.values()), default=0)
    est_off = max((r.get("est_max_context", 0) for r in tr if r.get("bench") == "ours" and
                   r.get("policy") in ("offload", "offload-att") and not r.get("oom")), default=0)
    pts = sorted((c, r["peak_gib"]) for c, r in peer.items())
    if total and est_rec and len(pts) >= 2:
        (c1, m1), (c2, m2) = pts[-2], pts[-1]
        peer_max = int(c2 + (0.96 * total - m2) / ((m2 - m1) / (c2 - c1)))
        print(f"\nlargest context, estimated (BENCH_FIT=1 measures it): ours {est_rec:,} tokens with checkpoints on"
              f" the device ({est_rec / peer_max:.2f}x the peer)"
              + (f", {est_off:,} offloaded ({est_off / peer_max:.2f}x)" if est_off else "")
              + f"; the peer ~{peer_max:,} (its measured peaks extended to 96% of {total:.0f} GiB)")
    for r in tr + hf:
        if r.get("oom"):
            print(f"  {r['bench']} {r.get('policy', '')} context {r['context']}: out of memory")
lrows = [r for r in lm if r.get("bench") == "ours" and not r.get("oom")]
if lrows:
    print("\nLeMo at the default schedule (layers 0-14 and 31 dense, 40% of the blocks elsewhere), one step")
    print(f"{'scores':>7} {'policy':>12} {'context':>8} | {'tok/s':>7} {'peer':>7} {'ratio':>6} | {'GiB':>6} {'peer':>6}"
          f" {'ratio':>6} | {'host GiB':>8} | {'est GiB':>7} {'used':>6} | {'kept, base, tiles':>24}")
    for r in lrows:
        p = peer.get(r["context"])
        rt = f"{r['tokens_per_s'] / p['tokens_per_s']:.2f}" if p else "-"
        rm = f"{r['peak_gib'] / p['peak_gib']:.2f}" if p else "-"
        kb = f"{r.get('kept_layers', '-')}, {r.get('base', '-')}, {r.get('mlp_tiles', 1)}"
        print(f"{r['lemo']:>7} {r['policy']:>12} {r['context']:>8} | {r['tokens_per_s']:>7.0f}"
              f" {(format(p['tokens_per_s'], '.0f') if p else '-'):>7} {rt:>6} | {r['peak_gib']:>6.1f}"
              f" {(format(p['peak_gib'], '.1f') if p else '-'):>6} {rm:>6} | {r['host_gib']:>8.1f} |"
              f" {r['est_peak_gib']:>7.1f} {r['device_used_gib']:>6.1f} | {kb:>24}")
    for r in lm:
        if r.get("oom"):
            print(f"  LeMo {r.get('lemo', '')} {r.get('policy', '')} context {r['context']}: out of memory")
for r in lm:
    if r.get("bench") != "layers":
        continue
    print(f"\nper layer at {r['context']} tokens, {r['policy']}, LeMo {r['lemo']} (ms; GiB it would keep):")
    for k in ("dense", "sparse"):
        if k in r:
            x = r[k]
            print(f"  {k:<6} layer {x['layer']:>2} kept {x['kept_fraction']:.2f}: forward {x['forward_ms']:.1f}"
                  f" (selection {x['select_ms']:.1f}), recompute {x['recompute_ms']:.1f}, backward"
                  f" {x['backward_ms']:.1f}; activations {x['act_gib']:.2f} GiB")
    if "movement" in r and "sparse" in r:
        mv, x = r["movement"], r["sparse"]
        tot = x["forward_ms"] + x["recompute_ms"] + x["backward_ms"]
        print(f"  token movement of a sparse layer (4 gathers, 3 scatter-adds of its kept rows): {mv['per_layer_ms']:.2f} ms"
              f" = {100 * mv['per_layer_ms'] / tot:.2f}% of the layer's {tot:.1f} ms")
if fit:
    print("\nlargest context (one step each):")
    for r in fit:
        if r.get("bench") not in ("ours_fit", "peer_fit"):
            continue
        if r.get("oom"):
            print(f"  {r['bench']:<9} {r.get('policy', ''):<9} {r['context']:>7}: does not fit")
        else:
            extra = f" est {r['est_peak_gib']:.1f} used {r['device_used_gib']:.1f}" if "est_peak_gib" in r else ""
            print(f"  {r['bench']:<9} {r.get('policy', ''):<9} {r['context']:>7}: fits, peak {r['peak_gib']:.1f} GiB,"
                  f" step {r['step_s']:.1f} s{extra}")
if om:
    print(f"\nsame-shape training step ({om[0]['layers']} layers of Llama-2-7B width, vocab {om[0]['vocab']}):")
    for r in om:
        p = next((x for x in pm if x.get("context") == r["context"] and "tokens_per_s" in x), None)
        pt = p["tokens_per_s"] if p else float("nan")
        print(f"  context {r['context']:>6}: ours {r['tokens_per_s']:>8} tokens/s ({r['mem_gib']} GiB planned)"
              f"  peer {pt:>8} tokens/s ({p['peak_gib'] if p else '-'} GiB)  ratio {r['tokens_per_s'] / pt:.2f}")
PY
