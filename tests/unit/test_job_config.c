/* test_job_config.c: the job config parser accepts what DESIGN section 6 documents and
 * names the key of every bad value or unknown key. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "checkpoint.h"
#include "job_config.h"
#include "lemo.h"

static void bad(const char *json, const char *param) {
    JobConfig c;
    Err e = {0};
    int rc = job_config_parse(json, &c, &e);
    CHECK(rc == -1, "accepted bad config %s", json);
    CHECK(!strcmp(e.param, param), "config %s: param '%s', want '%s' (%s)", json, e.param, param, e.msg);
    CHECK(strstr(e.msg, param) != NULL, "message '%s' does not name '%s'", e.msg, param);
}

#define BASE "\"model\":\"m\",\"train_file\":\"t.jsonl\",\"output_dir\":\"o\""

int main(void) {
    JobConfig c;
    Err e = {0};
    CHECK(job_config_parse("{" BASE "}", &c, &e) == 0, "minimal config: %s", e.msg);
    CHECK(c.context_length == 1024 && c.lora.r == 8 && c.lora.alpha == 16, "defaults");
    CHECK(c.lora.targets[TARGET_Q] && c.lora.targets[TARGET_O] && !c.lora.targets[TARGET_GATE], "default targets");

    const char *full = "{" BASE ",\"eval_file\":\"e.jsonl\",\"context_length\":4096,\"max_steps\":100,\"seed\":3,"
                       "\"grad_accum\":4,\"eval_every\":10,\"checkpoint_every\":20,\"chat_template\":\"chatml\","
                       "\"lora\":{\"r\":16,\"alpha\":32,\"dropout\":0.05,\"target_modules\":[\"q_proj\",\"down_proj\",\"up\"]},"
                       "\"optimizer\":{\"lr\":1e-4,\"betas\":[0.9,0.95],\"weight_decay\":0.1,\"warmup_steps\":5,\"grad_clip\":0.5},"
                       "\"rope_scaling\":{\"type\":\"linear\",\"factor\":4},\"memory\":{\"checkpointing\":false},"
                       "\"resume_from\":\"auto\",\"device\":\"cpu\"}";
    CHECK(job_config_parse(full, &c, &e) == 0, "full config: %s", e.msg);
    CHECK(c.context_length == 4096 && c.max_steps == 100 && c.seed == 3 && c.grad_accum == 4, "ints");
    CHECK(c.lora.r == 16 && c.lora.targets[TARGET_DOWN] && c.lora.targets[TARGET_UP] && !c.lora.targets[TARGET_K], "lora");
    CHECK(c.optim.beta2 == 0.95f && c.optim.warmup_steps == 5, "optimizer");
    CHECK(c.has_rope_scaling && c.rope_scaling.type == ROPE_LINEAR && c.rope_scaling.factor == 4, "rope");
    CHECK(c.act.all == 0 && !strcmp(c.resume_from, "auto"), "memory/resume");

    // the resolved config round-trips through its JSON form
    char *s = job_config_to_json(&c);
    JobConfig c2;
    CHECK(job_config_parse(s, &c2, &e) == 0, "round trip: %s", e.msg);
    CHECK(c2.context_length == c.context_length && c2.lora.r == c.lora.r && c2.optim.lr == c.optim.lr &&
          c2.rope_scaling.factor == c.rope_scaling.factor && c2.grad_accum == c.grad_accum,
          "round trip changed values");
    free(s);

    // the activation policy: checkpointing on by default, offload moves the checkpoints to the host
    CHECK(job_config_parse("{" BASE "}", &c, &e) == 0 && c.act.all == ACT_RECOMPUTE, "default policy");
    CHECK(job_config_parse("{" BASE ",\"memory\":{\"offload\":true}}", &c, &e) == 0 && c.act.all == ACT_OFFLOAD,
          "offload: %s", e.msg);
    s = job_config_to_json(&c);
    CHECK(s && strstr(s, "\"offload\": true") != NULL, "offload not written back: %s", s ? s : "(null)");
    CHECK(s && job_config_parse(s, &c2, &e) == 0 && c2.act.all == ACT_OFFLOAD, "offload round trip: %s", e.msg);
    free(s);
    CHECK(job_config_parse("{" BASE ",\"memory\":{\"offload\":false}}", &c, &e) == 0 && c.act.all == ACT_RECOMPUTE,
          "offload false");
    // the attention outputs go to the host beside the checkpoints, never alone
    CHECK(job_config_parse("{" BASE ",\"memory\":{\"offload\":true,\"offload_attention\":true}}", &c, &e) == 0 &&
              c.act.all == ACT_OFFLOAD_ATT,
          "offload_attention: %s", e.msg);
    s = job_config_to_json(&c);
    CHECK(s && job_config_parse(s, &c2, &e) == 0 && c2.act.all == ACT_OFFLOAD_ATT, "offload_attention round trip: %s",
          e.msg);
    free(s);
    // a policy per layer, by name, overriding the one for all
    CHECK(job_config_parse("{" BASE ",\"memory\":{\"offload\":true,\"layers\":[\"offload_attention\",\"keep\","
                           "\"recompute\",\"offload\"]}}", &c, &e) == 0 &&
              c.act.n == 4 && c.act.layer[0] == ACT_OFFLOAD_ATT && c.act.layer[1] == ACT_KEEP &&
              c.act.layer[2] == ACT_RECOMPUTE && c.act.layer[3] == ACT_OFFLOAD && act_layer(&c.act, 1) == ACT_KEEP,
          "memory.layers: %s", e.msg);
    s = job_config_to_json(&c);
    CHECK(s && job_config_parse(s, &c2, &e) == 0 && c2.act.n == 4 && !memcmp(c2.act.layer, c.act.layer, 4) &&
              c2.act.all == ACT_OFFLOAD,
          "memory.layers round trip: %s", s ? s : e.msg);
    free(s);
    CHECK(act_policy_check(&c.act, 4, &e) == 0, "4 layers for 4");
    CHECK(act_policy_check(&c.act, 32, &e) == -1 && !strcmp(e.param, "memory.layers") && strstr(e.msg, "32"),
          "4 layers for 32: %s", e.msg);
    // memory.auto leaves the policy to the trainer; it stands alone
    CHECK(job_config_parse("{" BASE ",\"memory\":{\"auto\":true}}", &c, &e) == 0 && c.act_auto == 1, "memory.auto: %s",
          e.msg);
    s = job_config_to_json(&c);
    CHECK(s && job_config_parse(s, &c2, &e) == 0 && c2.act_auto == 1, "memory.auto round trip: %s", s ? s : e.msg);
    free(s);
    bad("{" BASE ",\"memory\":{\"auto\":true,\"offload\":true}}", "memory.auto");
    bad("{" BASE ",\"memory\":{\"auto\":\"yes\"}}", "memory.auto");
    bad("{" BASE ",\"memory\":{\"layers\":[\"keep\",\"swap\"]}}", "memory.layers");
    bad("{" BASE ",\"memory\":{\"layers\":[]}}", "memory.layers");
    bad("{" BASE ",\"memory\":{\"layers\":\"keep\"}}", "memory.layers");
    bad("{" BASE ",\"memory\":{\"layers\":[1]}}", "memory.layers");
    bad("{" BASE ",\"memory\":{\"offload_attention\":true}}", "memory.offload_attention");
    bad("{" BASE ",\"memory\":{\"offload\":true,\"offload_attention\":1}}", "memory.offload_attention");

    // LeMo: the default schedule, a fraction per layer, dense layers, the round trip, the errors
    CHECK(job_config_parse("{" BASE ",\"context_length\":2048,\"lemo\":{}}", &c, &e) == 0, "lemo {}: %s", e.msg);
    LemoSpec z;
    CHECK(c.lemo.on && lemo_resolve(&c.lemo, 32, &z, &e) == 0 && z.on && z.block == 64 && z.scores == LEMO_SCORES_EXACT &&
              z.seed == c.seed, "lemo defaults: %s", e.msg);
    int sched_ok = 1;
    for (int l = 0; l < 32; l++) sched_ok &= z.keep[l] == (l < 15 || l == 31 ? 1.0f : 0.4f);
    CHECK(sched_ok, "the default schedule: layers 0-14 and 31 dense, 0.4 elsewhere");
    CHECK(lemo_rows(&z, 15, 65536) == 410 * 64 && lemo_rows(&z, 0, 65536) == 65536 && lemo_rows(&z, 15, 100) == 100,
          "kept rows: %d, %d, %d", lemo_rows(&z, 15, 65536), lemo_rows(&z, 0, 65536), lemo_rows(&z, 15, 100));
    CHECK(lemo_resolve(&c.lemo, 6, &z, &e) == 0 && z.keep[0] == 1 && z.keep[1] == 1 && z.keep[2] == 0.4f &&
              z.keep[4] == 0.4f && z.keep[5] == 1, "the default schedule of 6 layers");
    CHECK(job_config_parse("{" BASE ",\"context_length\":256,\"lemo\":{\"keep\":[1,0.5,0.25],\"scores\":\"random\","
                           "\"block\":32,\"seed\":9}}", &c, &e) == 0 && lemo_resolve(&c.lemo, 3, &z, &e) == 0 &&
              z.keep[0] == 1 && z.keep[1] == 0.5f && z.keep[2] == 0.25f && z.block == 32 && z.seed == 9 &&
              z.scores == LEMO_SCORES_RANDOM, "lemo per layer: %s", e.msg);
    CHECK(lemo_resolve(&c.lemo, 4, &z, &e) == -1 && !strcmp(e.param, "lemo.keep"), "3 fractions for 4 layers");
    char *rt = job_config_to_json(&c);
    JobConfig lc;
    CHECK(rt && job_config_parse(rt, &lc, &e) == 0 && lemo_resolve(&lc.lemo, 3, &z, &e) == 0 && z.keep[2] == 0.25f &&
              z.seed == 9, "lemo round trip: %s", e.msg);
    free(rt);
    CHECK(job_config_parse("{" BASE ",\"context_length\":2048,\"lemo\":{\"keep\":0.5,\"dense_layers\":[3]}}", &c, &e) == 0 &&
              lemo_resolve(&c.lemo, 6, &z, &e) == 0 && z.keep[0] == 0.5f && z.keep[3] == 1 && z.keep[5] == 0.5f,
          "dense_layers replace the default ones");
    CHECK(lemo_resolve(&c.lemo, 3, &z, &e) == -1 && !strcmp(e.param, "lemo.dense_layers"), "dense layer 3 of 3");
    CHECK(job_config_parse("{" BASE ",\"lemo\":{\"keep\":1}}", &c, &e) == 0 && lemo_resolve(&c.lemo, 6, &z, &e) == 0 &&
              !z.on, "keep 1 is dense");
    bad("{" BASE ",\"lemo\":{\"keep\":0}}", "lemo.keep");
    bad("{" BASE ",\"lemo\":{\"keep\":1.5}}", "lemo.keep");
    bad("{" BASE ",\"lemo\":{\"keep\":[0.5,\"half\"]}}", "lemo.keep");
    bad("{" BASE ",\"lemo\":{\"scores\":\"oracle\"}}", "lemo.scores");
    // predictor scores: the folder is required and only read with them; keep "auto" needs them
    bad("{" BASE ",\"lemo\":{\"scores\":\"predictor\"}}", "lemo.predictor");
    bad("{" BASE ",\"lemo\":{\"scores\":\"predictor\",\"predictor\":7}}", "lemo.predictor");
    bad("{" BASE ",\"lemo\":{\"scores\":\"exact\",\"predictor\":\"p\"}}", "lemo.predictor");
    bad("{" BASE ",\"lemo\":{\"keep\":\"auto\"}}", "lemo.keep");
    bad("{" BASE ",\"lemo\":{\"scores\":\"predictor\",\"predictor\":\"p\",\"keep\":\"most\"}}", "lemo.keep");
    CHECK(job_config_parse("{" BASE ",\"lemo\":{\"scores\":\"predictor\",\"predictor\":\"/nonexistent/p\","
                           "\"keep\":\"auto\"}}", &c, &e) == 0 && c.lemo.scores == LEMO_SCORES_PREDICTOR &&
              c.lemo.keep_auto && !strcmp(c.lemo.predictor, "/nonexistent/p"), "predictor auto: %s", e.msg);
    CHECK(lemo_resolve(&c.lemo, 6, &z, &e) == -1 && !strcmp(e.param, "lemo.predictor") && strstr(e.msg, "/nonexistent/p"),
          "a missing predictor folder names lemo.predictor: %s", e.msg);
    {
        char *pt = job_config_to_json(&c);
        JobConfig pc;
        CHECK(pt && job_config_parse(pt, &pc, &e) == 0 && pc.lemo.keep_auto && !strcmp(pc.lemo.predictor, "/nonexistent/p"),
              "predictor round trip: %s", e.msg);
        free(pt);
    }
    bad("{" BASE ",\"lemo\":{\"block\":48}}", "lemo.block");
    bad("{" BASE ",\"lemo\":{\"dense_layers\":[-1]}}", "lemo.dense_layers");
    bad("{" BASE ",\"lemo\":{\"seed\":\"x\"}}", "lemo.seed");
    bad("{" BASE ",\"lemo\":{\"ratio\":0.4}}", "lemo.ratio");
    bad("{" BASE ",\"lemo\":true}", "lemo");
    bad("{" BASE ",\"context_length\":1000,\"lemo\":{}}", "context_length");
    bad("{" BASE ",\"memory\":{\"mlp_tiles\":0}}", "memory.mlp_tiles");
    bad("{" BASE ",\"memory\":{\"auto\":true,\"mlp_tiles\":4}}", "memory.auto");

    // parallel: one GPU by default; gpus and mode read, written back and checked against the config
    CHECK(job_config_parse("{" BASE "}", &c, &e) == 0 && c.parallel.gpus == 1 && c.parallel.mode == PAR_MODE_AUTO,
          "parallel defaults");
    s = job_config_to_json(&c);
    CHECK(s && strstr(s, "\"parallel\"") && job_config_parse(s, &c2, &e) == 0 && c2.parallel.gpus == 1 &&
              c2.parallel.mode == PAR_MODE_AUTO, "parallel defaults written back: %s", s ? s : e.msg);
    free(s);
    CHECK(job_config_parse("{" BASE ",\"context_length\":8192,\"parallel\":{\"gpus\":4,\"mode\":\"context\"}}", &c, &e) == 0 &&
              c.parallel.gpus == 4 && c.parallel.mode == PAR_MODE_CONTEXT, "parallel context: %s", e.msg);
    s = job_config_to_json(&c);
    CHECK(s && job_config_parse(s, &c2, &e) == 0 && c2.parallel.gpus == 4 && c2.parallel.mode == PAR_MODE_CONTEXT,
          "parallel round trip: %s", s ? s : e.msg);
    free(s);
    CHECK(job_config_parse("{" BASE ",\"grad_accum\":8,\"parallel\":{\"gpus\":8,\"mode\":\"data\"}}", &c, &e) == 0 &&
              c.parallel.gpus == 8 && c.parallel.mode == PAR_MODE_DATA, "parallel data: %s", e.msg);
    CHECK(job_config_parse("{" BASE ",\"parallel\":{\"gpus\":64}}", &c, &e) == 0 && c.parallel.gpus == 64, "64 GPUs");
    // one GPU splits nothing: any context length; several: 2 * gpus chunks of 64-row units
    CHECK(job_config_parse("{" BASE ",\"context_length\":1000,\"parallel\":{\"mode\":\"context\"}}", &c, &e) == 0,
          "context over one GPU at 1000 tokens: %s", e.msg);
    CHECK(job_config_parse("{" BASE ",\"context_length\":768,\"parallel\":{\"gpus\":3,\"mode\":\"context\"}}", &c, &e) == 0,
          "768 over 3 GPUs (6 chunks of 128): %s", e.msg);
    bad("{" BASE ",\"context_length\":1000,\"parallel\":{\"gpus\":2,\"mode\":\"context\"}}", "context_length");
    bad("{" BASE ",\"context_length\":640,\"parallel\":{\"gpus\":2,\"mode\":\"context\"}}", "context_length");
    // with a larger LeMo block the unit is the block: 2 x 2 chunks of 128 rows
    CHECK(job_config_parse("{" BASE ",\"context_length\":1024,\"lemo\":{\"block\":128},\"parallel\":{\"gpus\":2,"
                           "\"mode\":\"context\"}}", &c, &e) == 0, "1024 over 2 GPUs with block 128: %s", e.msg);
    bad("{" BASE ",\"context_length\":1280,\"lemo\":{\"block\":128},\"parallel\":{\"gpus\":2,\"mode\":\"context\"}}",
        "context_length");
    e = (Err){0};
    CHECK(job_config_parse("{" BASE ",\"context_length\":1000,\"parallel\":{\"gpus\":2,\"mode\":\"context\"}}", &c, &e) ==
              -1 && strstr(e.msg, "768 or 1024"), "the error suggests the nearest lengths: %s", e.msg);
    bad("{" BASE ",\"parallel\":{\"gpus\":0}}", "parallel.gpus");
    bad("{" BASE ",\"parallel\":{\"gpus\":65}}", "parallel.gpus");
    bad("{" BASE ",\"parallel\":{\"gpus\":\"two\"}}", "parallel.gpus");
    bad("{" BASE ",\"parallel\":{\"gpus\":1.5}}", "parallel.gpus");
    bad("{" BASE ",\"parallel\":{\"mode\":\"tensor\"}}", "parallel.mode");
    bad("{" BASE ",\"parallel\":{\"mode\":2}}", "parallel.mode");
    bad("{" BASE ",\"parallel\":{\"tp\":2}}", "parallel.tp");
    bad("{" BASE ",\"parallel\":4}", "parallel");
    bad("{" BASE ",\"parallel\":{\"gpus\":4,\"mode\":\"data\"}}", "grad_accum");
    bad("{" BASE ",\"device\":\"cpu\",\"parallel\":{\"mode\":\"context\"}}", "parallel.mode");
    bad("{" BASE ",\"device\":\"cpu\",\"grad_accum\":2,\"parallel\":{\"gpus\":2}}", "parallel.gpus");
    // a change made after parsing (lemo estimate --gpus) is checked by the same rules
    CHECK(job_config_parse("{" BASE ",\"context_length\":4096,\"parallel\":{\"mode\":\"context\"}}", &c, &e) == 0, "ctx");
    c.parallel.gpus = 8;
    CHECK(job_parallel_check(&c, &e) == 0, "4096 over 8 GPUs: %s", e.msg);
    c.parallel.gpus = 64;
    CHECK(job_parallel_check(&c, &e) == -1 && !strcmp(e.param, "context_length"), "4096 over 64 GPUs: %s", e.msg);
    c.parallel.gpus = 65;
    CHECK(job_parallel_check(&c, &e) == -1 && !strcmp(e.param, "parallel.gpus"), "65 GPUs: %s", e.msg);

    CHECK(job_config_parse("{" BASE ",\"rope_scaling\":{\"type\":\"none\"}}", &c, &e) == 0 && !c.has_rope_scaling,
          "rope_scaling none: %s", e.msg);
    bad("{" BASE ",\"rope_scaling\":{\"type\":\"none\",\"factor\":2}}", "rope_scaling");

    bad("{" BASE ",\"learning_rate\":1}", "learning_rate");
    bad("{" BASE ",\"context_length\":\"long\"}", "context_length");
    bad("{" BASE ",\"context_length\":1}", "context_length");
    bad("{" BASE ",\"max_steps\":-3}", "max_steps");
    bad("{" BASE ",\"lora\":{\"r\":0}}", "lora.r");
    bad("{" BASE ",\"lora\":{\"rank\":4}}", "lora.rank");
    bad("{" BASE ",\"lora\":{\"target_modules\":[\"qq_proj\"]}}", "lora.target_modules");
    bad("{" BASE ",\"optimizer\":{\"lr\":-1}}", "optimizer.lr");
    bad("{" BASE ",\"optimizer\":{\"betas\":[0.9]}}", "optimizer.betas");
    bad("{" BASE ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":2}}", "rope_scaling.type");
    bad("{" BASE ",\"device\":\"tpu\"}", "device");
    bad("{" BASE ",\"seed\":-1}", "seed");
    bad("{" BASE ",\"memory\":{\"checkpointing\":false,\"offload\":true}}", "memory.offload");
    bad("{" BASE ",\"memory\":{\"offload\":\"yes\"}}", "memory.offload");
    bad("{" BASE ",\"memory\":{\"swap\":true}}", "memory.swap");
    bad("{\"train_file\":\"t\",\"output_dir\":\"o\"}", "model");
    bad("{\"model\":\"m\",\"output_dir\":\"o\"}", "train_file");
    CHECK(job_config_parse("[1,2]", &c, &e) == -1, "array accepted");
    CHECK(job_config_parse("{\"model\":", &c, &e) == -1 && strstr(e.msg, "JSON"), "broken JSON: %s", e.msg);
    // a checkpoint's state.json: read back on resume, its cursor must lie within the windows
    {
        TrainState st;
        Err e = {0};
        const char *good = "{\"step\": 4, \"total_steps\": 10, \"epoch\": 1, \"pos\": 20, \"n_windows\": 20, "
                           "\"seed\": 42, \"tokens\": 4096}";
        CHECK(checkpoint_state_parse(good, strlen(good), &st, &e) == 0 && st.step == 4 && st.pos == 20 &&
                  st.n_windows == 20 && st.tokens == 4096,
              "state.json read back: %s", e.msg);
        static const char *const bad[] = {
            "{\"step\": 4, \"total_steps\": 10, \"epoch\": 0, \"pos\": 21, \"n_windows\": 20, \"seed\": 1, \"tokens\": 1}",
            "{\"step\": -1, \"total_steps\": 10, \"epoch\": 0, \"pos\": 0, \"n_windows\": 20, \"seed\": 1, \"tokens\": 1}",
            "{\"step\": 1, \"total_steps\": 10, \"epoch\": 0, \"pos\": -3, \"n_windows\": 20, \"seed\": 1, \"tokens\": 1}",
            "{\"step\": 1, \"total_steps\": 10, \"epoch\": 0, \"pos\": 0, \"seed\": 1, \"tokens\": 1}",
            "{\"step\": 4294967297, \"total_steps\": 10, \"epoch\": 0, \"pos\": 0, \"n_windows\": 2, \"seed\": 1, \"tokens\": 1}",
            "not json", NULL};
        for (int i = 0; bad[i]; i++) {
            e.msg[0] = 0;
            CHECK(checkpoint_state_parse(bad[i], strlen(bad[i]), &st, &e) != 0 && e.msg[0], "bad state.json %d accepted", i);
        }
    }
    return check_done("test_job_config");
}
