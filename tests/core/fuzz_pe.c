/*
 * fuzz_pe.c - libFuzzer entry point for shim/core/fxpe (not a cmocka test,
 * not run by "make check").  Build with clang:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Ishim/core \
 *         tests/core/fuzz_pe.c shim/core/fxpe.c -o fuzz_pe
 * Seed it with real DLLs (e.g. Wine's PE builtins) and the images
 * test_pe.c builds.
 */
#include <stddef.h>
#include <stdint.h>

#include "fxpe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fx_pe_info pi;
    char err[256];

    if (fx_pe_parse(data, size, &pi, err, sizeof(err)) == 0)
        fx_pe_info_free(&pi);
    return 0;
}
