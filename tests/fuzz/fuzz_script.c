/*
 * fuzz_script.c - libFuzzer harness for shim/core/fxscript (fwxreplay
 * scripts, docs/replay-format.md).  The input is the script's text.
 * Beyond memory safety: a refused script has a one-line message, an
 * accepted one respects the documented bounds; sends round-trip through
 * fx_escape (the golden-file encoding).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fxscript.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    fx_script *s;

    err[0] = '\0';
    s = fx_script_parse("fuzz.fwxs", NULL, (const char *)data, size, err, sizeof(err));
    if (s == NULL) {
        if (err[0] == '\0' || strchr(err, '\n') != NULL)
            abort();
        return 0;
    }
    if (s->nsteps > FX_SCRIPT_MAX_STEPS || s->nfilters > FX_SCRIPT_MAX_FILTERS)
        abort();
    for (size_t i = 0; i < s->nsteps; i++) {
        const fx_script_step *st = &s->steps[i];
        if (st->op == FX_STEP_PAUSE && st->ms > FX_SCRIPT_MAX_PAUSE)
            abort();
        if ((st->op == FX_STEP_CLIENT_SEND || st->op == FX_STEP_SERVER_SEND) && st->len) {
            fx_text t = {0};
            fx_escape(&t, st->data, st->len);
            if (!t.oom && (t.p == NULL || t.len < st->len))
                abort();
            fx_text_free(&t);
        }
    }
    fx_script_free(s);
    return 0;
}
