/* test_server_job_request.c: job-creation bodies -> trainer configs (job_request.c): OpenAI's
 * shapes ("auto", method.supervised, learning_rate_multiplier) map to the trainer's keys, only
 * the trainer contract's keys are written, and bad fields are errors naming the request field. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "job_request.h"

static int model_dir(void *ctx, const char *name, char *dir, size_t cap, int *max_pos, int *n_layers) {
    (void)ctx;
    if (strcmp(name, "tiny")) return -1;
    snprintf(dir, cap, "/models/tiny");
    *max_pos = 256;
    *n_layers = 3;
    return 0;
}

static int file_path(void *ctx, const char *id, char *path, size_t cap) {
    (void)ctx;
    if (strcmp(id, "file-abc") && strcmp(id, "file-val")) return -1;
    snprintf(path, cap, "/data/files/%s.jsonl", id);
    return 0;
}

static JobEnv env = {model_dir, file_path, NULL, "/data/jobs/ftjob-x", 0, "/data/lemo", 0};

static json_t *cfg_of(const char *body, JobSpec *sp) {
    Err e = {0};
    if (job_request_resolve(body, strlen(body), &env, sp, &e)) {
        fprintf(stderr, "unexpected error: %s (%s)\n", e.msg, e.param);
        return NULL;
    }
    return sp->config;
}

static void expect_error(const char *body, const char *param, const char *code) {
    JobSpec sp;
    Err e = {0};
    int rc = job_request_resolve(body, strlen(body), &env, &sp, &e);
    CHECK(rc == -1, "should fail: %s", body);
    CHECK(!strcmp(e.param, param), "param '%s', want '%s' for %s", e.param, param, body);
    if (code) CHECK(!strcmp(sp.code, code), "code '%s', want '%s'", sp.code, code);
    job_spec_free(&sp);
}

/* A metadata.webhook_url whose host is a literal internal IP is refused at creation unless the
 * server allows internal URLs; host names pass (they are judged when the webhook connects). */
static void check_webhook_internal_ip(void) {
    static const char *const refused[][2] = {
        {"http://127.0.0.1:8080/", "127.0.0.1"}, {"http://[::1]/", "::1"}, {"http://10.0.0.5/hook", "10.0.0.5"},
        {"https://user:pw@169.254.169.254/latest", "169.254.169.254"}, {"http://127.1/", "127.0.0.1"},
        {"http://2130706433/", "127.0.0.1"}, {"http://[::ffff:192.168.1.1]:80/", "::ffff:192.168.1.1"},
        {"http://[fe80::1%25eth0]/", "fe80::1"}};
    static const char *const passed[] = {"http://localhost:9/", "https://hooks.example.com/x?to=http://127.0.0.1/",
                                         "http://127.0.0.1@example.com/", "http://8.8.8.8/hook",
                                         "http://[2001:db8::1]:8443/"};
    char body[512];
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        snprintf(body, sizeof body, "{\"model\": \"tiny\", \"training_file\": \"file-abc\", "
                 "\"metadata\": {\"webhook_url\": \"%s\"}}", refused[i][0]);
        JobSpec sp;
        Err e = {0};
        int rc = job_request_resolve(body, strlen(body), &env, &sp, &e);
        CHECK(rc == -1 && !strcmp(e.param, "metadata.webhook_url") && !strcmp(sp.code, "invalid_value") &&
                  strstr(e.msg, refused[i][1]),
              "%s refused naming %s: rc %d, %s (%s) %s", refused[i][0], refused[i][1], rc, e.param, sp.code, e.msg);
        job_spec_free(&sp);
        JobEnv open_env = env;
        open_env.allow_internal_urls = 1;
        e = (Err){0};
        rc = job_request_resolve(body, strlen(body), &open_env, &sp, &e);
        CHECK(rc == 0 && !strcmp(sp.webhook_url, refused[i][0]), "%s allowed with internal URLs on: %s", refused[i][0],
              e.msg);
        job_spec_free(&sp);
    }
    for (size_t i = 0; i < sizeof passed / sizeof passed[0]; i++) {
        snprintf(body, sizeof body, "{\"model\": \"tiny\", \"training_file\": \"file-abc\", "
                 "\"metadata\": {\"webhook_url\": \"%s\"}}", passed[i]);
        JobSpec sp;
        Err e = {0};
        int rc = job_request_resolve(body, strlen(body), &env, &sp, &e);
        CHECK(rc == 0 && !strcmp(sp.webhook_url, passed[i]), "%s accepted: %s", passed[i], e.msg);
        job_spec_free(&sp);
    }
}

/* method.type "lemo": predictor scores by default, their folder under the data directory's
 * lemo/MODEL/bB, the preparation's settings with their defaults in the job's request, no
 * server path in it; a server without a predictor store refuses predictor scores. */
static void lemo_checks(void) {
    JobSpec sp;
    json_t *c = cfg_of("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"method\": {\"type\": \"lemo\", "
                       "\"lemo\": {\"hyperparameters\": {\"context_length\": 256}}}}", &sp);
    json_t *lz = json_object_get(c, "lemo");
    CHECK(!strcmp(json_string_value(json_object_get(lz, "scores")) ?: "", "predictor") &&
              !strcmp(json_string_value(json_object_get(lz, "predictor")) ?: "", "/data/lemo/tiny/b64"),
          "default predictor scores and folder: %s", lz ? json_dumps(lz, JSON_COMPACT) : "(none)");
    LemoPrepare lp;
    CHECK(job_lemo_prepare_of(sp.request, &lp) == 0 && lp.steps == LEMO_PREPARE_DEFAULT_STEPS &&
              lp.train_windows == LEMO_PREPARE_DEFAULT_WINDOWS && lp.context_length == 256 && lp.keep_mean == 0.6 &&
              !lp.only,
          "the preparation's defaults in the request");
    char *rq = json_dumps(sp.request, JSON_COMPACT);
    CHECK(rq && !strstr(rq, "/data/"), "no server path in the job's request: %s", rq);
    free(rq);
    job_spec_free(&sp);
    c = cfg_of("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"method\": {\"type\": \"lemo\", "
               "\"lemo\": {\"block\": 32, \"prepare\": {\"steps\": 30, \"context_length\": 128}, \"hyperparameters\": "
               "{\"context_length\": 64}}}}", &sp);
    CHECK(c && job_lemo_prepare_of(sp.request, &lp) == 0 && lp.steps == 30 && lp.context_length == 128 &&
              !strcmp(json_string_value(json_object_get(json_object_get(c, "lemo"), "predictor")) ?: "",
                      "/data/lemo/tiny/b32"),
          "the preparation's own settings");
    job_spec_free(&sp);
    c = cfg_of("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"method\": {\"type\": \"lemo\", "
               "\"lemo\": {\"scores\": \"exact\", \"hyperparameters\": {\"context_length\": 128}}}}", &sp);
    CHECK(c && job_lemo_prepare_of(sp.request, &lp) != 0 && !json_object_get(json_object_get(c, "lemo"), "predictor"),
          "exact scores need no preparation");
    job_spec_free(&sp);
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"method\": {\"type\": \"lemo\", \"lemo\": "
                 "{\"prepare\": {\"train_windows\": 0}, \"hyperparameters\": {\"context_length\": 128}}}}",
                 "method.lemo.prepare.train_windows", "invalid_value");
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"method\": {\"type\": \"lemo\", \"lemo\": "
                 "{\"prepare\": [], \"hyperparameters\": {\"context_length\": 128}}}}",
                 "method.lemo.prepare", "invalid_type");
    JobEnv bare = env;
    bare.lemo_dir = NULL;
    Err e = {0};
    const char *b = "{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"method\": {\"type\": \"lemo\"}}";
    int rc = job_request_resolve(b, strlen(b), &bare, &sp, &e);
    CHECK(rc != 0 && !strcmp(e.param, "method.lemo.scores"), "no predictor store: predictor scores refused (%s)", e.param);
    job_spec_free(&sp);
    bare.lemo_dir = "/data/lemo";
    bare.allow_prepare_only = 1;
    b = "{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"method\": {\"type\": \"lemo\", \"lemo\": {\"prepare\": "
        "{\"only\": true}, \"hyperparameters\": {\"context_length\": 128}}}}";
    rc = job_request_resolve(b, strlen(b), &bare, &sp, &e);
    CHECK(rc == 0 && job_lemo_prepare_of(sp.request, &lp) == 0 && lp.only, "a preparation job where the route allows it");
    job_spec_free(&sp);
}

int main(void) {
    JobSpec sp;
    json_t *c = cfg_of("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"seed\": 5}", &sp);
    CHECK(c != NULL, "minimal body");
    if (c) {
        static const char *const contract[] = {"model", "train_file", "eval_file", "output_dir", "context_length",
                                               "max_steps", "epochs", "seed", "chat_template", "eval_every",
                                               "checkpoint_every", "grad_accum", "lora", "optimizer", "rope_scaling",
                                               "resume_from", "device", "memory", "base_model_name", NULL};
        const char *k;
        json_t *v;
        json_object_foreach(c, k, v) {
            int ok = 0;
            for (int i = 0; contract[i]; i++) ok |= !strcmp(k, contract[i]);
            CHECK(ok, "config key %s is in the trainer contract", k);
        }
        CHECK(!strcmp(json_string_value(json_object_get(c, "model")), "/models/tiny"), "model dir");
        CHECK(!strcmp(json_string_value(json_object_get(c, "base_model_name")) ?: "", "tiny"),
              "the adapters name the model's id");
        CHECK(!strcmp(json_string_value(json_object_get(c, "train_file")), "/data/files/file-abc.jsonl"), "train file");
        CHECK(!strcmp(json_string_value(json_object_get(c, "eval_file")), ""), "no eval file");
        CHECK(!strcmp(json_string_value(json_object_get(c, "resume_from")), "auto"), "resume auto");
        CHECK(json_integer_value(json_object_get(c, "context_length")) == 256, "context defaults to the model's 256");
        CHECK(json_number_value(json_object_get(c, "epochs")) == 1 && !json_object_get(c, "max_steps"), "1 epoch");
        CHECK(json_integer_value(json_object_get(c, "seed")) == 5 && sp.seed == 5, "seed");
        CHECK(json_array_size(json_object_get(json_object_get(c, "lora"), "target_modules")) == 4, "default targets");
        json_t *mem = json_object_get(c, "memory");
        CHECK(json_is_true(json_object_get(mem, "checkpointing")) && json_is_false(json_object_get(mem, "offload")),
              "memory defaults to checkpoints on the device");
    }
    job_spec_free(&sp);

    // hyperparameters.memory picks the activation policy, echoed back in the request
    c = cfg_of("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"hyperparameters\": {\"memory\": "
               "\"offload_attention\"}}",
               &sp);
    CHECK(c != NULL, "memory offload_attention");
    if (c) {
        json_t *mem = json_object_get(c, "memory");
        CHECK(json_is_true(json_object_get(mem, "offload")) && json_is_true(json_object_get(mem, "offload_attention")),
              "offload_attention reaches the trainer config");
        json_t *hp = json_object_get(sp.request, "hyperparameters");
        CHECK(!strcmp(json_string_value(json_object_get(hp, "memory")), "offload_attention"), "request shows memory");
    }
    job_spec_free(&sp);
    // "auto": the trainer picks, layer by layer (memory.auto)
    c = cfg_of("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"hyperparameters\": {\"memory\": \"auto\"}}",
               &sp);
    CHECK(c && json_is_true(json_object_get(json_object_get(c, "memory"), "auto")) &&
              json_object_size(json_object_get(c, "memory")) == 1,
          "memory auto reaches the trainer config as memory.auto alone");
    if (c)
        CHECK(!strcmp(json_string_value(json_object_get(json_object_get(sp.request, "hyperparameters"), "memory")), "auto"),
              "request shows memory auto");
    job_spec_free(&sp);
    // or one policy per layer of the model (it has 3)
    c = cfg_of("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"hyperparameters\": {\"memory\": "
               "[\"offload_attention\", \"recompute\", \"keep\"]}}",
               &sp);
    CHECK(c != NULL, "memory per layer");
    if (c) {
        json_t *ly = json_object_get(json_object_get(c, "memory"), "layers");
        CHECK(json_array_size(ly) == 3 && !strcmp(json_string_value(json_array_get(ly, 0)), "offload_attention") &&
                  !strcmp(json_string_value(json_array_get(ly, 2)), "keep"),
              "memory.layers reaches the trainer config");
        json_t *hp = json_object_get(sp.request, "hyperparameters");
        CHECK(json_array_size(json_object_get(hp, "memory")) == 3, "request shows the per-layer memory");
    }
    job_spec_free(&sp);
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"hyperparameters\": {\"memory\": "
                 "[\"keep\", \"keep\"]}}",
                 "hyperparameters.memory", "invalid_value");
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"hyperparameters\": {\"memory\": "
                 "[\"keep\", \"swap\", \"keep\"]}}",
                 "hyperparameters.memory", "invalid_value");

    c = cfg_of("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"validation_file\": \"file-val\", "
               "\"method\": {\"type\": \"supervised\", \"supervised\": {\"hyperparameters\": {\"n_epochs\": \"auto\", "
               "\"batch_size\": 4, \"learning_rate_multiplier\": 0.5}}}, \"hyperparameters\": {\"max_steps\": 9, "
               "\"context_length\": 128, \"lora_r\": 16, \"lora_alpha\": 32, \"target_modules\": \"all\", "
               "\"checkpoint_every\": 3, \"eval_every\": 3, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}}}",
               &sp);
    CHECK(c != NULL, "full body");
    if (c) {
        json_t *opt = json_object_get(c, "optimizer"), *lora = json_object_get(c, "lora");
        CHECK(fabs(json_number_value(json_object_get(opt, "lr")) - 1e-4) < 1e-12, "lr = 2e-4 * 0.5");
        CHECK(json_integer_value(json_object_get(c, "grad_accum")) == 4, "batch_size -> grad_accum");
        CHECK(json_integer_value(json_object_get(c, "max_steps")) == 9 && !json_object_get(c, "epochs"), "max_steps");
        CHECK(json_integer_value(json_object_get(lora, "r")) == 16, "lora r");
        CHECK(json_array_size(json_object_get(lora, "target_modules")) == 7, "all targets");
        CHECK(json_is_object(json_object_get(c, "rope_scaling")), "rope passthrough");
        CHECK(!strcmp(json_string_value(json_object_get(c, "eval_file")), "/data/files/file-val.jsonl"), "eval file");
        json_t *hp = json_object_get(sp.request, "hyperparameters");
        CHECK(json_integer_value(json_object_get(hp, "batch_size")) == 4, "request shows batch_size");
        CHECK(!strcmp(json_string_value(json_object_get(json_object_get(sp.request, "method"), "type")), "supervised"),
              "method type");
    }
    job_spec_free(&sp);

    expect_error("{", "", "invalid_json");
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"hyperparameters\": {\"memory\": \"swap\"}}",
                 "hyperparameters.memory", "invalid_value");
    expect_error("{\"model\": \"big\", \"training_file\": \"file-abc\"}", "model", "model_not_found");
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-zzz\"}", "training_file", "file_not_found");
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"x\": 1}", "x", "unknown_parameter");
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"hyperparameters\": {\"lora_r\": 2000}}",
                 "hyperparameters.lora_r", "invalid_value");
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"hyperparameters\": {\"warmup_steps\": -1}}",
                 "hyperparameters.warmup_steps", NULL);
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"hyperparameters\": {\"lora_dropout\": 0.95}}",
                 "hyperparameters.lora_dropout", NULL);
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"hyperparameters\": {\"rope_scaling\": "
                 "{\"type\": \"linear\", \"factor\": 0.5}}}", "hyperparameters.rope_scaling.factor", NULL);
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"method\": {\"type\": \"supervised\", "
                 "\"supervised\": {\"beta\": 1}}}", "method.supervised.beta", NULL);
    expect_error("{\"model\": \"tiny\", \"training_file\": \"file-abc\", \"metadata\": {\"webhook_url\": \"ftp://x\"}}",
                 "metadata.webhook_url", NULL);
    check_webhook_internal_ip();
    lemo_checks();
    return check_done("test_server_job_request");
}
