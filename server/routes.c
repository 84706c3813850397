/* routes.c: the one route table (http.h's Route): what the dispatcher in http.c matches, and
 * what GET /openapi.json documents (api_openapi.c), so the document cannot drift from the
 * server. Each route names the error codes (api_errors.c) its handler can answer with; the
 * codes every route shares (server_error; invalid_api_key where a key is needed;
 * request_too_large where a body is read; uri_too_long, headers_too_large and nul_byte_in_url,
 * which http.c answers before routing) are added by the document itself. */
#include "api.h"

#define LIST_ERRORS "invalid_limit invalid_cursor invalid_order"

const Route http_routes[] = {
    {.method = "GET", .pattern = "/healthz", .handler = api_health, .open = 1,
     .summary = "Liveness: the database answers; uptime, running and queued jobs, slots", .errors = "unhealthy"},
    {.method = "GET", .pattern = "/metrics", .handler = api_metrics, .open = ROUTE_OPEN_IF_PUBLIC,
     .summary = "Prometheus text: queue depth, jobs by state, tokens/s, memory"},
    {.method = "GET", .pattern = "/openapi.json", .handler = api_openapi, .open = 1,
     .summary = "This API as an OpenAPI 3.1 document, generated from the route and error tables"},
    {.method = "POST", .pattern = "/v1/files", .handler = api_files_create, .on_begin = api_files_begin,
     .on_body = api_files_body, .summary = "Upload a JSONL dataset (multipart, raw body with ?filename=, or {\"url\"} to import)",
     .query = "filename purpose",
     .errors = "invalid_file invalid_multipart missing_file missing_filename missing_purpose invalid_purpose "
               "file_too_large invalid_json unknown_parameter invalid_type invalid_url url_not_allowed import_failed "
               "insufficient_storage"},
    {.method = "GET", .pattern = "/v1/files", .handler = api_files_list, .summary = "List files",
     .query = "purpose limit after order", .errors = LIST_ERRORS},
    {.method = "GET", .pattern = "/v1/files/{file_id}", .handler = api_files_get, .summary = "Retrieve a file",
     .errors = "not_found"},
    {.method = "DELETE", .pattern = "/v1/files/{file_id}", .handler = api_files_delete, .summary = "Delete a file",
     .errors = "not_found file_in_use"},
    {.method = "GET", .pattern = "/v1/files/{file_id}/content", .handler = api_files_content,
     .summary = "A file's content: a dataset's JSONL, a job's results CSV", .errors = "not_found"},
    {.method = "POST", .pattern = "/v1/fine_tuning/jobs", .handler = api_jobs_create,
     .summary = "Create a fine-tuning job (?dry_run=true: the memory and time estimate instead)", .query = "dry_run force",
     .errors = "invalid_json invalid_type invalid_value unknown_parameter missing_required_parameter model_not_found "
               "file_not_found conflicting_hyperparameters unsupported_method unsupported_value context_beyond_model "
               "job_does_not_fit invalid_config estimate_failed estimate_unavailable estimate_timeout"},
    {.method = "GET", .pattern = "/v1/fine_tuning/jobs", .handler = api_jobs_list, .summary = "List fine-tuning jobs",
     .query = "limit after order metadata", .errors = LIST_ERRORS " invalid_metadata_filter"},
    {.method = "GET", .pattern = "/v1/fine_tuning/jobs/{fine_tuning_job_id}", .handler = api_jobs_get,
     .summary = "Retrieve a fine-tuning job, with its progress", .errors = "not_found"},
    {.method = "POST", .pattern = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel", .handler = api_jobs_cancel,
     .summary = "Cancel a job (a running one stops at a step boundary with a checkpoint)", .errors = "not_found invalid_state"},
    {.method = "POST", .pattern = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/pause", .handler = api_jobs_pause,
     .summary = "Pause a job at a step boundary with a checkpoint", .errors = "not_found invalid_state"},
    {.method = "POST", .pattern = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/resume", .handler = api_jobs_resume,
     .summary = "Queue a paused job to continue from its checkpoint", .errors = "not_found invalid_state"},
    {.method = "GET", .pattern = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events", .handler = api_events_list,
     .summary = "A job's events (messages, and metrics with OpenAI's data); ?stream=true: Server-Sent Events",
     .query = "limit after order stream", .errors = "not_found " LIST_ERRORS},
    {.method = "GET", .pattern = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints", .handler = api_checkpoints_list,
     .summary = "A job's checkpoints with their metrics", .query = "limit after",
     .errors = "not_found invalid_limit invalid_cursor"},
    {.method = "GET", .pattern = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/adapter", .handler = api_adapter_tar,
     .summary = "The adapter as a tar (PEFT layout); sha256 ETag; Range", .query = "step",
     .errors = "not_found invalid_step checkpoint_not_found adapter_not_ready insufficient_storage"},
    {.method = "GET", .pattern = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/adapter/{file}", .handler = api_adapter_file,
     .summary = "One file of the adapter", .query = "step",
     .errors = "not_found invalid_step checkpoint_not_found adapter_not_ready"},
    {.method = "GET", .pattern = "/v1/models", .handler = api_models_list,
     .summary = "Base models and fine-tuned adapters"},
    {.method = "GET", .pattern = "/v1/models/{model}", .handler = api_models_get, .summary = "Retrieve a model",
     .errors = "not_found"},
    {.method = "DELETE", .pattern = "/v1/models/{model}", .handler = api_models_delete,
     .summary = "Delete a fine-tuned model: its adapter and its job's checkpoints (the job stays)",
     .errors = "not_found model_not_deletable model_in_use"},
    {.method = "POST", .pattern = "/v1/models/{model}/lemo", .handler = api_models_lemo_prepare,
     .summary = "Prepare a base model's LeMo predictors and calibrated schedule, as a queued job (its progress and "
                "events as any job's)",
     .errors = "not_found invalid_json invalid_type invalid_value unknown_parameter missing_required_parameter "
               "file_not_found context_beyond_model"},
};
const int http_n_routes = (int)(sizeof http_routes / sizeof http_routes[0]);
