/*
 * fuzz_pcap.c - libFuzzer harness for shim/core/fxpcap (fwxreplay --pcap:
 * classic libpcap captures, link layers, IPv4/IPv6, TCP reassembly, UDP).
 * The input is the capture file. Beyond memory safety: a refused capture
 * has a one-line message; for an accepted one, each of its first flows
 * converts to a script, and that script's text (fx_script_format) parses
 * back with fx_script_parse to the same number of actions - what
 * fwxreplay --pcap --to-script promises.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fxpcap.h"
#include "fxscript.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    fx_pcap *p = NULL;

    err[0] = '\0';
    if (fx_pcap_parse_buffer(data, size, &p, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || strchr(err, '\n') != NULL)
            abort();
        return 0;
    }
    {
        fx_text d = {0};
        fx_pcap_describe(p, &d);
        fx_text_free(&d);
    }
    for (size_t n = 1; n <= p->nflows && n <= 4; n++) {
        fx_script *s = fx_pcap_to_script(p, n, "fuzz.pcap", err, sizeof(err));
        fx_text t = {0};
        fx_script *back;

        if (s == NULL)
            continue;   /* a flow it cannot express: said in err */
        fx_script_format(s, &t);
        if (!t.oom && t.p) {
            back = fx_script_parse("fuzz.fwxs", NULL, t.p, t.len, err, sizeof(err));
            if (back == NULL) {
                fprintf(stderr, "fuzz_pcap: flow %zu: its script does not parse back: %s\n", n, err);
                abort();
            }
            if (back->nsteps != s->nsteps) {
                fprintf(stderr, "fuzz_pcap: flow %zu: %zu actions, %zu after a round trip\n", n,
                        s->nsteps, back->nsteps);
                abort();
            }
            fx_script_free(back);
        }
        fx_text_free(&t);
        fx_script_free(s);
    }
    fx_pcap_free(p);
    return 0;
}
