/* api_errors.c: the error table (see api_errors.h). Codes a job can end with (its error
 * object: train_failed, disk_full, ...) are the trainer's, not HTTP answers, and are not here. */
#include "api_errors.h"

#include <string.h>

const ApiError api_errors[] = {
    /* any route */
    {"server_error", 500, "server_error", "Something failed on the server's side (database, disk); the message says what"},
    {"invalid_api_key", 401, "authentication_error", "API keys exist and the request has no valid Authorization: Bearer KEY"},
    {"request_too_large", 413, "invalid_request_error", "The request body is larger than the server's limit"},
    {"not_found", 404, "invalid_request_error", "No such path, or no object with the id in the path"},
    {"method_not_allowed", 405, "invalid_request_error", "The path exists under another method"},
    {"uri_too_long", 414, "invalid_request_error", "The URL (path and query as sent) is longer than 8192 bytes"},
    {"headers_too_large", 431, "invalid_request_error",
     "More than 100 header lines, one longer than 8192 bytes, or more than 32768 bytes of them"},
    {"nul_byte_in_url", 400, "invalid_request_error", "The URL's path or query holds a NUL byte (%00)"},
    /* request bodies and query parameters */
    {"invalid_json", 400, "invalid_request_error", "The body is not a JSON object"},
    {"invalid_type", 400, "invalid_request_error", "A field has the wrong JSON type (param names it)"},
    {"invalid_value", 400, "invalid_request_error", "A field's value is out of range (param names it)"},
    {"unknown_parameter", 400, "invalid_request_error", "A field the endpoint does not take (param names it)"},
    {"missing_required_parameter", 400, "invalid_request_error", "A required field is missing (param names it)"},
    {"invalid_limit", 400, "invalid_request_error", "?limit= is not an integer in the endpoint's range"},
    {"invalid_cursor", 400, "invalid_request_error", "?after= names no object of this list"},
    {"invalid_order", 400, "invalid_request_error", "?order= is neither asc nor desc"},
    {"invalid_metadata_filter", 400, "invalid_request_error",
     "A ?metadata[KEY]=VALUE filter with an empty or too long key or value, more than 16 of them, or ?metadata= other than null"},
    /* files */
    {"invalid_file", 400, "invalid_request_error", "The dataset is empty or a line is not valid (message and line name it)"},
    {"invalid_multipart", 400, "invalid_request_error", "The multipart/form-data body cannot be parsed"},
    {"missing_file", 400, "invalid_request_error", "The multipart body has no 'file' part"},
    {"missing_filename", 400, "invalid_request_error", "A raw upload without ?filename="},
    {"missing_purpose", 400, "invalid_request_error", "The multipart body has no 'purpose' field"},
    {"invalid_purpose", 400, "invalid_request_error", "'purpose' is not fine-tune"},
    {"file_too_large", 413, "invalid_request_error", "The dataset (decompressed) is larger than --max-upload-bytes"},
    {"invalid_url", 400, "invalid_request_error", "An import's url is not http(s)"},
    {"url_not_allowed", 400, "invalid_request_error", "An import's url reaches a loopback, private or link-local address"},
    {"import_failed", 400, "invalid_request_error", "An import's url cannot be downloaded"},
    {"insufficient_storage", 507, "server_error", "The data directory is full: nothing was stored"},
    {"file_in_use", 409, "invalid_request_error", "The file is read by a job that has not finished"},
    /* jobs */
    {"model_not_found", 400, "invalid_request_error", "'model' names no base model under --models"},
    {"file_not_found", 400, "invalid_request_error", "training_file or validation_file names no uploaded fine-tune file"},
    {"conflicting_hyperparameters", 400, "invalid_request_error",
     "A hyperparameter given at the top level and under method disagrees"},
    {"unsupported_method", 400, "invalid_request_error", "method.type is not supervised or lemo"},
    {"unsupported_value", 400, "invalid_request_error", "A value this server does not support (yet); the message says which"},
    {"context_beyond_model", 400, "invalid_request_error",
     "context_length beyond the model's max_position_embeddings without rope_scaling"},
    {"job_does_not_fit", 400, "invalid_request_error",
     "The job's own estimate says it does not fit this machine (?force=true queues it anyway); error.estimate holds it"},
    {"invalid_config", 400, "invalid_request_error", "`lemo estimate` refuses the resolved job config"},
    {"estimate_failed", 500, "server_error", "`lemo estimate` printed no result"},
    {"estimate_unavailable", 500, "server_error", "`lemo estimate` cannot run"},
    {"estimate_timeout", 504, "server_error", "`lemo estimate` took too long"},
    {"invalid_state", 409, "invalid_request_error", "The job's status does not allow this (cancel a finished job, resume one not paused)"},
    /* adapters and models */
    {"invalid_step", 400, "invalid_request_error", "?step= is not a positive integer"},
    {"checkpoint_not_found", 404, "invalid_request_error", "The job has no checkpoint at ?step="},
    {"adapter_not_ready", 404, "invalid_request_error", "The job has no adapter (yet, or its model was deleted), or no such adapter file"},
    {"model_not_deletable", 403, "invalid_request_error", "A base model: only fine-tuned models (ft:...) can be deleted over the API"},
    {"model_in_use", 409, "invalid_request_error", "A job that has not finished uses the fine-tuned model"},
    /* health */
    {"unhealthy", 503, "server_error", "The database does not answer"},
};
const int api_n_errors = (int)(sizeof api_errors / sizeof api_errors[0]);

const ApiError *api_error_find(const char *code) {
    for (int i = 0; code && i < api_n_errors; i++)
        if (!strcmp(api_errors[i].code, code)) return &api_errors[i];
    return NULL;
}
