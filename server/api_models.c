/* api_models.c: GET /v1/models and /v1/models/{id}, DELETE /v1/models/{id} (fine-tuned ones):
 * the base models (folders with a
 * config.json under the --models roots; the first root holding a name wins) and the
 * fine-tuned adapters of succeeded jobs. A model whose config.json has
 * "lemo_random_init": true (made by `lemo init-model`) is marked "random_init": true. With no
 * base model at all the list carries a "hint" on how to add one. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "api.h"
#include "lemo_store.h"
#include "models.h"
#include "scheduler.h"
#include "srv_util.h"

int models_name_valid(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 200 || name[0] == '.') return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
              *c == '_' || *c == '.'))
            return 0;
    return 1;
}

/* Reads DIR/config.json (small): NULL if absent or not a JSON object. */
static json_t *model_config(const char *dir) {
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/config.json", dir);
    size_t n;
    char *txt = fs_read_all(p, &n, 1 << 20, NULL);
    if (!txt) return NULL;
    json_t *c = json_loadb(txt, n, 0, NULL);
    free(txt);
    if (!json_is_object(c)) { json_decref(c); return NULL; }
    return c;
}

int models_find(Server *srv, const char *name, char *dir, size_t cap, int *max_pos, int *n_layers) {
    if (!models_name_valid(name)) return -1;
    for (int i = 0; i < srv->n_models; i++) {
        char d[PATH_MAX + 256];
        snprintf(d, sizeof d, "%s/%s", srv->models[i], name);
        json_t *c = model_config(d);
        if (!c) continue;
        json_t *mp = json_object_get(c, "max_position_embeddings");
        if (max_pos) *max_pos = json_is_integer(mp) ? (int)json_integer_value(mp) : 0;
        json_t *nl = json_object_get(c, "num_hidden_layers");
        if (n_layers) *n_layers = json_is_integer(nl) ? (int)json_integer_value(nl) : 0;
        json_decref(c);
        snprintf(dir, cap, "%s", d);
        return 0;
    }
    return -1;
}

/* The base model's LeMo predictors (lemo_store.h), with a preparation running now. */
static json_t *model_lemo(Server *srv, const char *name) {
    char ld[PATH_MAX], job[48] = "";
    int block = 0;
    snprintf(ld, sizeof ld, "%s/lemo", srv->data_dir);
    scheduler_lemo_preparing(srv->sched, name, job, sizeof job, &block);
    return lemo_store_model_json(ld, name, job, block);
}

/* The model object of a base model folder. */
static json_t *base_model_json(Server *srv, const char *name, const char *dir, json_t *cfg) {
    char p[PATH_MAX + 16];
    struct stat st;
    snprintf(p, sizeof p, "%s/config.json", dir);
    long long created = stat(p, &st) == 0 ? (long long)st.st_mtime : 0;
    json_t *ri = json_object_get(cfg, "lemo_random_init");
    json_t *mt = json_object_get(cfg, "model_type");
    json_t *mp = json_object_get(cfg, "max_position_embeddings");
    // (no "path": where the server keeps its models is not the API's business)
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:b}", "id", name, "object", "model", "created",
                          (json_int_t)created, "owned_by", "local", "kind", "base", "random_init", json_is_true(ri));
    json_object_set_new(o, "model_type", json_is_string(mt) ? json_copy(mt) : json_null());
    json_object_set_new(o, "max_position_embeddings", json_is_integer(mp) ? json_copy(mp) : json_null());
    json_object_set_new(o, "lemo", model_lemo(srv, name));
    return o;
}

static json_t *adapter_model_json(const JobRow *j) {
    char url[128];
    snprintf(url, sizeof url, "/v1/fine_tuning/jobs/%s/adapter", j->id);
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s}", "id", j->fine_tuned_model, "object", "model",
                     "created", (json_int_t)j->finished_at, "owned_by", "user", "kind", "adapter", "parent", j->model,
                     "job_id", j->id, "adapter_url", url);
}

/* Appends the base models of every root (first root wins a name) to data. */
static void list_base(Server *srv, json_t *data) {
    for (int i = 0; i < srv->n_models; i++) {
        DIR *d = opendir(srv->models[i]);
        if (!d) continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!models_name_valid(de->d_name)) continue;
            int dup = 0;
            size_t k;
            json_t *x;
            json_array_foreach(data, k, x) dup |= !strcmp(json_string_value(json_object_get(x, "id")), de->d_name);
            if (dup) continue;
            char dir[PATH_MAX + 256];
            snprintf(dir, sizeof dir, "%s/%s", srv->models[i], de->d_name);
            json_t *cfg = model_config(dir);
            if (!cfg) continue;
            json_array_append_new(data, base_model_json(srv, de->d_name, dir, cfg));
            json_decref(cfg);
        }
        closedir(d);
    }
}

int api_models_list(Req *r) {
    json_t *data = json_array();
    list_base(r->srv, data);
    size_t n_base = json_array_size(data);
    JobRow *rows;
    int n;
    Err e;
    if (db_job_list_succeeded(r->srv->db, 1000, &rows, &n, &e) == 0) {
        for (int i = 0; i < n; i++) {
            if (rows[i].fine_tuned_model[0]) json_array_append_new(data, adapter_model_json(&rows[i]));
            job_row_free(&rows[i]);
        }
        free(rows);
    }
    json_t *out = json_pack("{s:s, s:o}", "object", "list", "data", data);
    if (n_base == 0) {
        char roots[2048] = "";
        for (int i = 0; i < r->srv->n_models; i++) {
            size_t l = strlen(roots);
            snprintf(roots + l, sizeof roots - l, "%s%s", i ? ", " : "", r->srv->models[i]);
        }
        char hint[3072];
        snprintf(hint, sizeof hint,
                 "No base model found under --models (%s). Add a Hugging Face model folder (config.json, "
                 "*.safetensors, tokenizer.json) as MODELS_DIR/NAME, for example a Llama, Mistral or Qwen2 download, "
                 "or create a small random model to try the service with `lemo init-model tiny ./models/tiny`.",
                 roots[0] ? roots : "none given");
        json_object_set_new(out, "hint", json_string(hint));
    }
    return http_json(r, 200, out);
}

int api_models_get(Req *r) {
    const char *id = r->params[0];
    char dir[PATH_MAX];
    if (models_find(r->srv, id, dir, sizeof dir, NULL, NULL) == 0) {
        json_t *cfg = model_config(dir);
        json_t *o = base_model_json(r->srv, id, dir, cfg);
        json_decref(cfg);
        return http_json(r, 200, o);
    }
    JobRow *rows;
    int n;
    Err e;
    if (!strncmp(id, "ft:", 3) && db_job_list_succeeded(r->srv->db, 100000, &rows, &n, &e) == 0) {
        json_t *found = NULL;
        for (int i = 0; i < n; i++) {
            if (!found && !strcmp(rows[i].fine_tuned_model, id)) found = adapter_model_json(&rows[i]);
            job_row_free(&rows[i]);
        }
        free(rows);
        if (found) return http_json(r, 200, found);
    }
    return http_not_found(r, "model", id);
}

/* DELETE /v1/models/{model}: a fine-tuned model "ft:BASE[:SUFFIX]:JOB_ID" goes away with its
 * adapter, its job's checkpoints and their download tars; the job record stays, its
 * fine_tuned_model cleared (OpenAI's reply {"id","object":"model","deleted":true}). The id
 * only selects a job: the paths removed are built from the validated job id, never from the
 * model id, so no id can reach outside the job's folder. The database forgets the model
 * first, then the folders go: a crash in between leaves unreferenced bytes, never a listed
 * model without its adapter. */
int api_models_delete(Req *r) {
    const char *id = r->params[0];
    char dir[PATH_MAX];
    if (models_find(r->srv, id, dir, sizeof dir, NULL, NULL) == 0)
        return http_error(r, 403, "invalid_request_error", "model_not_deletable", "model",
                          "'%s' is a base model (a folder under --models): only fine-tuned models (ft:...) can be "
                          "deleted over the API", id);
    const char *colon = strrchr(id, ':');
    const char *job_id = colon ? colon + 1 : "";
    if (strncmp(id, "ft:", 3) || !id_valid(job_id, "ftjob-")) return http_not_found(r, "model", id);
    Db *db = r->srv->db;
    Err e;
    JobRow j;
    int rc = db_job_get(db, job_id, &j, &e);
    if (rc < 0) return http_500(r, "%s", e.msg);
    if (rc == 0 || strcmp(j.fine_tuned_model, id)) {
        if (rc == 1) job_row_free(&j);
        return http_not_found(r, "model", id);
    }
    job_row_free(&j);
    char jdir[PATH_MAX], mark[PATH_MAX];
    snprintf(jdir, sizeof jdir, "%s/jobs/%s", r->srv->data_dir, job_id);
    snprintf(mark, sizeof mark, "/jobs/%s/", job_id);  // how another job's config would name its files
    if (db_begin(db, &e)) return http_500(r, "%s", e.msg);
    int used = db_model_in_use(db, id, mark, &e);
    if (used != 0) {
        db_rollback(db);
        if (used < 0) return http_500(r, "%s", e.msg);
        return http_error(r, 409, "invalid_request_error", "model_in_use", "model",
                          "%d job%s that ha%s not finished use%s %s; cancel %s first", used, used == 1 ? "" : "s",
                          used == 1 ? "s" : "ve", used == 1 ? "s" : "", id, used == 1 ? "it" : "them");
    }
    char msg[600];
    snprintf(msg, sizeof msg, "Fine-tuned model %.500s deleted: its adapter and checkpoints were removed", id);
    int cleared = db_job_clear_model(db, job_id, id, &e);
    if (cleared < 0 || (cleared == 1 && (db_checkpoint_delete_job(db, job_id, &e) < 0 ||
                                         db_event_add(db, job_id, "info", "message", msg, NULL, &e) < 0))) {
        db_rollback(db);
        return http_500(r, "%s", e.msg);
    }
    if (db_commit(db, &e)) return http_500(r, "%s", e.msg);
    if (cleared == 0) return http_not_found(r, "model", id);  // deleted meanwhile by another request
    server_notify_events(r->srv);
    static const char *const parts[] = {"adapter", "checkpoints", "downloads"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/%s", jdir, parts[i]);
        fs_remove_tree(p);
    }
    return http_json(r, 200, json_pack("{s:s, s:s, s:b}", "id", id, "object", "model", "deleted", 1));
}

/* POST /v1/models/{model}/lemo: prepares the base model's LeMo predictors as a queued job
 * (events and progress as any job's; method.lemo.prepare.only). Body: training_file
 * (required), validation_file, block (64), context_length, steps, train_windows, keep_mean,
 * seed, rope_scaling; a model that has them already gets new ones (jobs then use those). The
 * reply is the job. */
int api_models_lemo_prepare(Req *r) {
    const char *id = r->params[0];
    char dir[PATH_MAX];
    if (models_find(r->srv, id, dir, sizeof dir, NULL, NULL))
        return !strncmp(id, "ft:", 3) ? http_error(r, 400, "invalid_request_error", "invalid_value", "model",
                                                   "'%s' is a fine-tuned model: LeMo's predictors belong to base models",
                                                   id)
                                      : http_not_found(r, "model", id);
    json_error_t je;
    json_t *b = r->body_len ? json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je) : json_object();
    if (!json_is_object(b)) {
        json_decref(b);
        return http_error(r, 400, "invalid_request_error", "invalid_json", NULL,
                          "The request body must be a JSON object with 'training_file'");
    }
    static const char *const known[] = {"training_file", "validation_file", "block", "context_length", "steps",
                                        "train_windows", "keep_mean", "seed", "rope_scaling", NULL};
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) {
        if (!str_in(k, known)) {
            char p[80];
            snprintf(p, sizeof p, "%.60s", k);
            json_decref(b);
            return http_error(r, 400, "invalid_request_error", "unknown_parameter", p, "Unknown field '%s' (known: "
                              "training_file, validation_file, block, context_length, steps, train_windows, keep_mean, "
                              "seed, rope_scaling)", p);
        }
    }
    /* the same request a LeMo job makes, so every field is checked as a job's is */
    json_t *prep = json_pack("{s:b}", "only", 1);
    static const char *const pk[] = {"steps", "train_windows", "context_length", "keep_mean", "seed", NULL};
    for (int i = 0; pk[i]; i++)
        if ((v = json_object_get(b, pk[i]))) json_object_set(prep, pk[i], v);
    json_t *lemo = json_pack("{s:s, s:o, s:{s:i}}", "scores", "predictor", "prepare", prep, "hyperparameters",
                             "max_steps", 1);
    if ((v = json_object_get(b, "block"))) json_object_set(lemo, "block", v);
    json_t *ctx = json_object_get(b, "context_length");
    json_t *hp = json_object_get(lemo, "hyperparameters");
    if (json_is_integer(ctx)) json_object_set(hp, "context_length", ctx);  // the window prepare packs
    if ((v = json_object_get(b, "rope_scaling"))) json_object_set(hp, "rope_scaling", v);
    json_t *req = json_pack("{s:s, s:{s:s, s:o}}", "model", id, "method", "type", "lemo", "lemo", lemo);
    if ((v = json_object_get(b, "training_file"))) json_object_set(req, "training_file", v);
    if ((v = json_object_get(b, "validation_file"))) json_object_set(req, "validation_file", v);
    json_decref(b);
    char *txt = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!txt) return http_500(r, "out of memory");
    int res = api_jobs_create_from(r, txt, strlen(txt), 1);
    free(txt);
    return res;
}
