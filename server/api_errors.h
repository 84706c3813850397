/* api_errors.h: the table of every error code the server answers with.
 *
 * An error reply is {"error":{"message","type","param","code"}}; the code is what a client
 * script branches on, so the set of codes is part of the API. They are declared once here,
 * with their HTTP status and type, and walked by code: GET /openapi.json lists them (per
 * route, from routes.c, and all together), and the reply helpers in http.c report on
 * stderr a code or status that is not in the table, which the integration tests watch for. */
#ifndef LEMO_API_ERRORS_H
#define LEMO_API_ERRORS_H

typedef struct {
    const char *code;
    unsigned status;
    const char *type;     // OpenAI's error type: invalid_request_error, authentication_error, server_error
    const char *what;     // when it happens, for the API document
} ApiError;

extern const ApiError api_errors[];
extern const int api_n_errors;

/* The table's entry for code, or NULL. */
const ApiError *api_error_find(const char *code);

#endif
