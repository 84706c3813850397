/* models.h: base models are folders under the --models roots, named by their folder name. */
#ifndef LEMO_MODELS_H
#define LEMO_MODELS_H

#include <stddef.h>

#include "server.h"

/* 1 if name can be a model folder name (no path, no leading dot). */
int models_name_valid(const char *name);
/* Finds NAME/config.json under the roots in order: 0 + dir (and max_position_embeddings and
 * num_hidden_layers, 0 if unknown; either pointer may be NULL), or -1. */
int models_find(Server *srv, const char *name, char *dir, size_t cap, int *max_pos, int *n_layers);

#endif
