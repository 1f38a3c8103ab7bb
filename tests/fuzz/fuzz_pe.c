/*
 * fuzz_pe.c - libFuzzer harness for shim/core/fxpe (the PE reader that the
 * launcher and fwxinfo run on untrusted filter DLLs).  Built by "make
 * fuzz" with clang -fsanitize=fuzzer,address,undefined, and by "make
 * check" with the plain compiler and tests/fuzz/replay_main.c, which
 * replays the corpus tests/fuzz/pe/ (seeds and every input that once
 * crashed).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fxpe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fx_pe_info pi;
    char err[256];

    if (fx_pe_parse(data, size, &pi, err, sizeof(err)) == 0) {
        /* What a successful parse promises its callers. */
        for (unsigned i = 0; i < pi.nsections; i++)
            if (pi.sections[i].name[8] != '\0')
                abort();
        if (pi.nsections && pi.sections == NULL)
            abort();
        fx_pe_info_free(&pi);
    } else if (err[0] == '\0') {
        abort();   /* every failure carries a message */
    }
    return 0;
}
