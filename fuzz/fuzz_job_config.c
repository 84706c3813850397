/* fuzz_job_config.c: job_config_parse (the trainer's config file, `lemo train CONFIG.json`, and
 * the server's last word on every job request) on arbitrary bytes.
 *
 * Whatever it accepts must be written back by job_config_to_json into text it accepts again,
 * giving the same text: the writer and the parser agree on every value they let through. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "job_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *txt = malloc(size + 1);
    if (!txt) return 0;
    memcpy(txt, data, size);
    txt[size] = 0;
    static JobConfig c, c2;  // large (paths): off the stack
    Err e = {0};
    if (job_config_parse(txt, &c, &e) == 0) {
        char *out = job_config_to_json(&c);
        if (!out) abort();
        if (job_config_parse(out, &c2, &e)) abort();  // what the writer wrote, the parser refuses
        char *out2 = job_config_to_json(&c2);
        if (!out2 || strcmp(out, out2)) abort();      // and reads back as something else
        free(out2);
        free(out);
    } else if (!e.msg[0]) {
        abort();  // refused without saying why
    }
    free(txt);
    return 0;
}
