/* job_request.h: a job-creation request body (OpenAI's shape plus our hyperparameters) turned
 * into the trainer's job config.
 *
 * Accepts `model`, `training_file`, `validation_file`, `seed`, `suffix`, `metadata` and
 * `hyperparameters` at the top level or under `method.supervised`; "auto" means the default.
 * Every value is type- and range-checked here, then the resolved config is run through the
 * trainer's own parser (job_config_parse), so a job the server accepts is one `lemo train`
 * runs. Errors name the request field in Err.param ("hyperparameters.lora_r") and carry an
 * error code. Pure (no I/O of its own: lookups go through JobEnv), so it can be fuzzed. */
#ifndef LEMO_JOB_REQUEST_H
#define LEMO_JOB_REQUEST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define JOB_DEFAULT_LR 2e-4

typedef struct {
    /* model folder name -> its directory, max_position_embeddings and num_hidden_layers (0 if
     * unknown); 0 found, -1 not */
    int (*model_dir)(void *ctx, const char *name, char *dir, size_t cap, int *max_pos, int *n_layers);
    /* file id -> dataset path; 0 found, -1 not */
    int (*file_path)(void *ctx, const char *id, char *path, size_t cap);
    void *ctx;
    const char *output_dir;   // where the trainer writes (jobs/JOB_ID)
    int allow_internal_urls;  // 0: a metadata.webhook_url whose host is a literal internal IP is refused
    const char *lemo_dir;     // where base models' LeMo predictors live (DATA/lemo); NULL: none
    int allow_prepare_only;   // method.lemo.prepare.only is accepted (POST /v1/models/{id}/lemo)
} JobEnv;

/* LeMo's predictor folder of base model `model` at block B: LEMO_DIR/MODEL/bB. */
void job_lemo_predictor_dir(const char *lemo_dir, const char *model, int block, char *out, size_t cap);

/* method.lemo.prepare's settings with their defaults: how the service prepares a base model's
 * predictors (the job's first phase when it has none; POST /v1/models/{id}/lemo). */
typedef struct {
    long steps, train_windows, context_length, seed;
    double keep_mean;
    int only;                 // a preparation job: no training after it
} LemoPrepare;
#define LEMO_PREPARE_DEFAULT_STEPS 200
#define LEMO_PREPARE_DEFAULT_WINDOWS 32
#define LEMO_PREPARE_MAX_CONTEXT 16384  // the paper trains on 16K windows
/* Reads request.method.lemo.prepare (as job_request_resolve stored it) into p; 0 when the
 * request is a LeMo job with predictor scores, -1 otherwise. */
int job_lemo_prepare_of(json_t *request, LemoPrepare *p);

typedef struct {
    char model[256];
    char training_file[48], validation_file[48];
    int64_t seed;
    char suffix[80];
    char webhook_url[1024];   // metadata.webhook_url, "" if none
    json_t *request;          // {"hyperparameters","method","metadata"} as the job object shows them
    json_t *config;           // the trainer config
    char code[48];            // error code when resolving fails
} JobSpec;

int job_request_resolve(const char *body, size_t len, const JobEnv *env, JobSpec *out, Err *e);
void job_spec_free(JobSpec *s);

#endif
