/* fuzz_checkpoint_state.c: checkpoint_state_parse (a checkpoint's state.json, read back on
 * every resume) on arbitrary bytes. What it accepts must be a cursor the trainer can follow:
 * a non-negative step and token count, the position within the window count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *txt = malloc(size ? size : 1);
    if (!txt) return 0;
    memcpy(txt, data, size);
    TrainState st;
    Err e = {0};
    if (checkpoint_state_parse(txt, size, &st, &e) == 0) {
        if (st.step < 0 || st.total_steps < 0 || st.pos > st.n_windows || st.tokens < 0) abort();
    } else if (!e.msg[0]) {
        abort();
    }
    free(txt);
    return 0;
}
