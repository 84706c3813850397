/* api_load.c: the API under mixed load while a job trains (bench/RESULTS.md records its runs).
 *
 * A fresh `lemo serve --slots 1` with stories260K training in its one slot and 20 jobs queued
 * behind it; then, all at once: event streams of the training job held open, uploads and dry
 * runs on their own schedules, and keep-alive connections reading the job list, the training
 * job's events and the job itself, at each read rate asked for. Reads are open loop (each
 * connection on a fixed schedule, timed from when the schedule wanted the request sent), so
 * a rate the server cannot keep shows up as latency instead of being hidden; rate 0 is the
 * closed loop (each connection asks again as soon as it has its answer), where latency is
 * connections / throughput. Every answer is checked (tests/integration/itload.h). Prints
 * p50/p90/p99/max per request kind, and the training steps done during each run.
 *
 * usage: api_load [--connections 256] [--streams 32] [--rates 500,1000,2000,0] [--seconds 15]
 *                 [--uploads 2] [--dry-runs 1] [-- FLAGS FOR lemo serve...]
 * $LEMO_BIN is the binary (default build/lemo); stories260K comes from $LEMO_SHARED/models
 * (default ../shared/models). */
#include "integration/itload.h"

static void usage(FILE *f) {
    fprintf(f, "usage: api_load [flags] [-- flags for lemo serve]\n"
               "  --connections N   keep-alive read connections (default 256)\n"
               "  --streams N       event streams of the training job held open (default 32)\n"
               "  --rates LIST      reads a second over all connections, one run each; 0 = closed loop\n"
               "                    (default 500,1000,2000,0)\n"
               "  --seconds S       measured seconds of each run, after 1 s of warm-up (default 15)\n"
               "  --uploads R       dataset uploads a second (default 2)\n"
               "  --dry-runs R      job dry runs a second (default 1)\n");
}

static double job_step(ITServer *s, const char *job) { return it_progress(s, job, "step"); }

int main(int argc, char **argv) {
    int connections = 256, streams = 32;
    double seconds = 15, uploads = 2, dry = 1;
    char rates[256] = "500,1000,2000,0";
    const char *extra[40];
    int n_extra = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--")) {
            for (i++; i < argc && n_extra < 36; i++) extra[n_extra++] = argv[i];
            break;
        }
        if (!strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!v) { usage(stderr); return 2; }
        if (!strcmp(a, "--connections")) connections = atoi(v);
        else if (!strcmp(a, "--streams")) streams = atoi(v);
        else if (!strcmp(a, "--rates")) snprintf(rates, sizeof rates, "%s", v);
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--uploads")) uploads = atof(v);
        else if (!strcmp(a, "--dry-runs")) dry = atof(v);
        else { usage(stderr); return 2; }
        i++;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *models = it_shared_models();
    if (!models) { fprintf(stderr, "api_load: no stories260K under $LEMO_SHARED/models\n"); return 1; }
    ITServer s;
    it_tempdir(&s);
    const char *args[48] = {"--models", models, "--slots", "1"};
    int na = 4;
    for (int i = 0; i < n_extra; i++) args[na++] = extra[i];
    args[na] = NULL;
    if (it_start_argv(&s, args)) return 1;
    ILMixed m;
    char why[400];
    if (il_mixed_prepare(&s, &m, uploads, dry, why, sizeof why)) {
        fprintf(stderr, "api_load: %s\n", why);
        it_stop(&s, SIGKILL);
        return 1;
    }
    printf("api_load: %d read connections, %d event streams, %.1f uploads/s, %.1f dry runs/s, %.0f s a run; "
           "server flags:", connections, streams, uploads, dry, seconds);
    for (int i = 0; i < n_extra; i++) printf(" %s", extra[i]);
    printf("%s\n", n_extra ? "" : " (defaults)");
    int bad = 0;
    for (char *save = NULL, *tok = strtok_r(rates, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        double rate = atof(tok);
        ILRun run;
        il_mixed_run_init(&run, &s, &m, connections, rate, streams, seconds);
        double s0 = job_step(&s, m.job);
        int rc = il_run(&run);
        double s1 = job_step(&s, m.job);
        if (rate > 0) printf("rate %.0f reads/s (open loop):\n", rate);
        else printf("closed loop:\n");
        il_report(stdout, &run);
        printf("  all reads: p50 %.2f ms, p99 %.2f ms; training: step %.0f -> %.0f (%.1f steps/s)%s\n",
               il_reads_percentile(&run, 0.5) * 1e3, il_reads_percentile(&run, 0.99) * 1e3, s0, s1,
               (s1 - s0) / run.wall_s, rc ? "; some connections could not be opened" : "");
        for (int i = 0; i < 3; i++)
            if (m.reads[i].first_bad[0]) printf("  first wrong %s: %s\n", m.reads[i].name, m.reads[i].first_bad);
        for (int i = 0; i < 2; i++)
            if (m.writes[i].first_bad[0]) printf("  first wrong %s: %s\n", m.writes[i].name, m.writes[i].first_bad);
        if (run.stream_first_bad[0]) printf("  first bad stream: %s\n", run.stream_first_bad);
        fflush(stdout);
        for (int i = 0; i < 3; i++) bad |= m.reads[i].bad || m.reads[i].failed;
        for (int i = 0; i < 2; i++) bad |= m.writes[i].bad || m.writes[i].failed;
        bad |= run.stream_bad > 0;
    }
    printf("api_load: server healthy after the runs: %s\n", it_healthy(&s) ? "yes" : "NO");
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    return bad;
}
