/* main.c: `lemo`, one binary with git-style subcommands.
 *
 * Each subcommand lives in its own cmd_*.c and has the signature
 * int cmd_x(int argc, char **argv) with argv[0] = the subcommand name;
 * it prints its own usage (every flag with its default) on --help and on a
 * wrong flag, and returns the process exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*CmdFn)(int argc, char **argv);

#define CMD(name) int name(int argc, char **argv);
CMD(cmd_train) CMD(cmd_eval) CMD(cmd_tokenize) CMD(cmd_estimate) CMD(cmd_init_model)
CMD(cmd_serve) CMD(cmd_keys) CMD(cmd_prepare)
#undef CMD

static const struct { const char *name; const char *help; } commands[] = {
    {"serve", "run the HTTP service (API, job queue, dashboard)"},
    {"train", "run one fine-tuning job from a config file"},
    {"eval", "mean next-token loss of a model (+ adapter) on text or a dataset"},
    {"tokenize", "text on stdin -> token ids (or --decode ids -> text)"},
    {"estimate", "predict peak memory and time of a job config without running it"},
    {"prepare", "train LeMo's pattern predictors for a model and calibrate its keep schedule"},
    {"keys", "create, list or revoke API keys"},
    {"init-model", "write a small randomly initialized model folder"},
};

static CmdFn lookup(const char *name) {
    if (!strcmp(name, "serve")) return cmd_serve;
    if (!strcmp(name, "train")) return cmd_train;
    if (!strcmp(name, "eval")) return cmd_eval;
    if (!strcmp(name, "tokenize")) return cmd_tokenize;
    if (!strcmp(name, "estimate")) return cmd_estimate;
    if (!strcmp(name, "prepare")) return cmd_prepare;
    if (!strcmp(name, "keys")) return cmd_keys;
    if (!strcmp(name, "init-model")) return cmd_init_model;
    return NULL;
}

static void usage(FILE *f) {
    fprintf(f, "usage: lemo COMMAND [FLAGS]   (lemo COMMAND --help for its flags)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
}

/* The CPU kernels alternate OpenMP loops with OpenBLAS calls (which have threads of their
 * own). With libgomp's default active wait, idle OpenMP threads spin on the cores OpenBLAS
 * then needs: measured 5x slower steps on small models on 2 cores. libgomp reads the policy
 * once, before main, so it is set here and the process re-executed once; a policy chosen by
 * the user is left alone. */
static void prefer_passive_openmp_wait(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then run with the default policy
}

int main(int argc, char **argv) {
    prefer_passive_openmp_wait(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name)) continue;
        return lookup(argv[1])(argc - 1, argv + 1);
    }
    fprintf(stderr, "lemo: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
