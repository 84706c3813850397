/* cmd_train.c: `lemo train CONFIG.json`: one job, progress as JSON lines on stdout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job_config.h"
#include "progress.h"
#include "trainer.h"

/* 1 when the failure was a write that found no space (or hit a file-size limit). The engine's
 * errors carry strerror() text rather than errno, and the server needs this one case typed:
 * a full disk pauses the job with its last checkpoint instead of failing it. */
static int err_disk_full(const Err *e) {
    const int codes[] = {ENOSPC, EDQUOT, EFBIG};
    for (int i = 0; i < 3; i++)
        if (strstr(e->msg, strerror(codes[i]))) return 1;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: lemo train CONFIG.json [--check]\n"
            "  Runs one fine-tuning job; prints progress as JSON lines on stdout\n"
            "  (start, step, eval, checkpoint, log, done | cancelled | error). SIGTERM finishes\n"
            "  the current step, writes a checkpoint and exits 0.\n"
            "  --check     validate the config, print the resolved config, and exit (default: off)\n"
            "  --help      this text\n"
            "CONFIG keys (defaults): model (required), train_file (required), output_dir (required),\n"
            "  eval_file (\"\": hold out eval_fraction 0.05 of documents), context_length 1024,\n"
            "  max_steps 0 (0: use epochs 1), seed 42, chat_template \"auto\", eval_every 0 (end only),\n"
            "  eval_windows 32, checkpoint_every 0 (end only), grad_accum 1, device \"auto\",\n"
            "  resume_from \"\" (a checkpoint dir, or \"auto\": newest in output_dir),\n"
            "  lora {r 8, alpha 16, dropout 0, target_modules [q_proj,k_proj,v_proj,o_proj]},\n"
            "  optimizer {lr 2e-4, betas [0.9,0.999], eps 1e-8, weight_decay 0, warmup_steps 0,\n"
            "             grad_clip 1.0, min_lr_ratio 0, schedule \"cosine\"},\n"
            "  rope_scaling {type linear|llama3, factor, ...} (default: the model's),\n"
            "  memory {checkpointing true, offload false, offload_attention false,\n"
            "          layers [one of keep|recompute|offload|offload_attention per layer] (default: all alike),\n"
            "          auto false (alone: pick per layer the fastest policy that fits the device)},\n"
            "  lemo {keep 0.4 | [per layer] | \"auto\" (predictor only), scores exact|random|predictor,\n"
            "        predictor DIR (lemo prepare --out), block 64, dense_layers, seed} (default: dense)\n");
}

int cmd_train(int argc, char **argv) {
    const char *path = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--check")) { check = 1; continue; }
        if (argv[i][0] == '-' || path) {
            fprintf(stderr, "lemo train: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        path = argv[i];
    }
    if (!path) { usage(stderr); return 2; }
    JobConfig c;
    Err e = {0};
    if (job_config_load(path, &c, &e)) {
        progress_emit(PROGRESS_ERROR, json_pack("{s:s, s:s, s:s}", "code", "invalid_config", "message", e.msg, "param", e.param));
        fprintf(stderr, "lemo train: %s\n", e.msg);
        return 2;
    }
    if (check) {
        char *s = job_config_to_json(&c);
        puts(s);
        free(s);
        return 0;
    }
    if (trainer_run(&c, &e)) {
        const char *code = err_disk_full(&e) ? "disk_full" : e.param[0] ? "invalid_input" : "train_failed";
        progress_emit(PROGRESS_ERROR, json_pack("{s:s, s:s, s:s}", "code", code,
                                         "message", e.msg, "param", e.param));
        fprintf(stderr, "lemo train: %s\n", e.msg);
        return 1;
    }
    return 0;
}
