/*
 * fxrecord.c - one live connection as a fwxreplay script (see fxrecord.h).
 *
 * Owns the recording's text: the header, the actions, the run of bytes
 * of the direction that is sending now (coalesced into lines when the
 * direction changes or a side ends), the size cap and the file write.
 */
#define _GNU_SOURCE
#include "fxrecord.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fxnet.h"
#include "fxscript.h"

/* A line of a run ends after a '\n' once it holds LINE_SOFT bytes, and
 * at LINE_HARD bytes in any case: text protocols keep their lines
 * together, binary data gets lines of bounded length. */
#define LINE_SOFT 1024
#define LINE_HARD 4096
#define LINE_OVERHEAD 12         /* `client: ""` and the newline */
#define TRAILER_RESERVE 512      /* the truncation comment, expect-closed */

struct fx_rec {
    fx_text hdr, body;
    unsigned char *run;
    size_t runlen, runcap, run_esc;
    int runside;                 /* -1: no run */
    size_t max;
    int truncated;
    int ended[2];
    size_t bytes[2];
    size_t steps;
    unsigned long id;
    time_t start;
    char *dir, *rule;
};

static size_t esc_len(unsigned char c)
{
    if (c == '\n' || c == '\r' || c == '\t' || c == '\\' || c == '"')
        return 2;
    return c >= 0x20 && c < 0x7f ? 1 : 4;
}

static void add_addr(fx_text *t, const char *key, const void *sa, int len)
{
    char text[80];
    if (!sa || len <= 0 || fx_addr_format(sa, len, text, sizeof(text)) < 0)
        return;
    fx_text_printf(t, "%s %s\n", key, text);
}

fx_rec *fx_rec_new(const fx_rec_info *in)
{
    fx_rec *r = calloc(1, sizeof(*r));
    char when[32], client[80] = "?";
    struct tm tm;

    if (!r)
        return NULL;
    r->runside = -1;
    r->max = in->max_bytes ? in->max_bytes : FX_RECORD_DEFAULT_MAX;
    if (r->max > FX_SCRIPT_MAX_SIZE)
        r->max = FX_SCRIPT_MAX_SIZE;
    if (r->max < FX_RECORD_MIN_MAX)
        r->max = FX_RECORD_MIN_MAX;
    r->id = in->id;
    r->start = in->start ? in->start : time(NULL);
    r->dir = strdup(in->dir ? in->dir : ".");
    r->rule = strdup(in->rule ? in->rule : "rule");
    if (!r->dir || !r->rule) {
        fx_rec_free(r);
        return NULL;
    }
    gmtime_r(&r->start, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (in->client && in->client_len > 0)
        fx_addr_format(in->client, in->client_len, client, sizeof(client));
    fx_text_printf(&r->hdr, "# recorded by fwxhost --record: rule %s, connection %lu from %s, "
                   "%s\n", r->rule, r->id, client, when);
    fx_text_printf(&r->hdr, "%s", "# bytes as the host read them from the client and from the "
                   "server;\n# replay: fwxreplay --update FILE, then fwxreplay FILE\n");
    fx_text_printf(&r->hdr, "rule %s\n", in->type == FX_RULE_OUTBOUND ? "outbound" : "publish");
    add_addr(&r->hdr, "listen", in->listen, in->listen_len);
    add_addr(&r->hdr, "target", in->target, in->target_len);
    add_addr(&r->hdr, "client-address", in->client, in->client_len);
    for (size_t i = 0; i < in->nfilters; i++) {
        /* Scripts resolve relative paths against their own directory:
         * write the absolute path of a DLL named relative to ours. */
        const char *spec = in->filters[i], *eq = strchr(spec, '=');
        char *dll = strndup(spec, eq ? (size_t)(eq - spec) : strlen(spec));
        char *abs = dll && dll[0] != '/' ? realpath(dll, NULL) : NULL;
        fx_text_printf(&r->hdr, "filter %s%s\n", abs ? abs : spec, abs && eq ? eq : "");
        free(abs);
        free(dll);
    }
    fx_text_add(&r->hdr, "\n", 1);
    if (r->hdr.oom) {
        fx_rec_free(r);
        return NULL;
    }
    return r;
}

static size_t used(const fx_rec *r)
{
    return r->hdr.len + r->body.len + r->run_esc +
           (r->runlen ? (r->runlen / LINE_SOFT + 1) * LINE_OVERHEAD : 0);
}

static void add_step(fx_rec *r, const char *text)
{
    fx_text_add(&r->body, text, strlen(text));
    r->steps++;
}

size_t fx_rec_line_end(const unsigned char *data, size_t pos, size_t len)
{
    size_t end = len - pos > LINE_HARD ? pos + LINE_HARD : len;
    for (size_t k = pos + LINE_SOFT; k < end; k++)
        if (data[k - 1] == '\n')
            return k;
    return end;
}

static void flush_run(fx_rec *r)
{
    const char *verb = r->runside == FX_REC_SERVER ? "server: \"" : "client: \"";
    size_t i = 0;
    while (i < r->runlen) {
        size_t cut = fx_rec_line_end(r->run, i, r->runlen);
        fx_text_add(&r->body, verb, strlen(verb));
        fx_escape(&r->body, r->run + i, cut - i);
        fx_text_add(&r->body, "\"\n", 2);
        r->steps++;
        i = cut;
    }
    r->runlen = r->run_esc = 0;
    r->runside = -1;
}

static int room_for_step(fx_rec *r)
{
    /* The parser's bounds: steps and size, with room for the trailer. */
    if (r->steps + (r->runlen ? r->runlen / LINE_SOFT + 1 : 0) + 4 >= FX_SCRIPT_MAX_STEPS ||
        used(r) + 64 + TRAILER_RESERVE > r->max) {
        r->truncated = 1;
        return 0;
    }
    return 1;
}

void fx_rec_data(fx_rec *r, enum fx_rec_side side, const void *data, size_t len)
{
    const unsigned char *d = data;
    if (!r || r->truncated || len == 0 || r->ended[side])
        return;
    if (r->runside != (int)side) {
        if (r->runside >= 0)
            flush_run(r);
        if (!room_for_step(r))
            return;
        r->runside = (int)side;
    }
    if (r->runlen + len > r->runcap) {
        size_t cap = r->runcap ? r->runcap : 4096;
        while (cap < r->runlen + len)
            cap *= 2;
        unsigned char *n = realloc(r->run, cap);
        if (!n) {
            r->truncated = 1;
            return;
        }
        r->run = n;
        r->runcap = cap;
    }
    size_t base = used(r), take = 0, esc = 0;
    for (; take < len; take++) {
        size_t e = esc_len(d[take]);
        size_t lines = (r->runlen + take + 1) / LINE_SOFT - r->runlen / LINE_SOFT;
        if (base + esc + e + lines * LINE_OVERHEAD + TRAILER_RESERVE > r->max ||
            r->steps + (r->runlen + take + 1) / LINE_SOFT + 6 >= FX_SCRIPT_MAX_STEPS) {
            r->truncated = 1;
            break;
        }
        esc += e;
    }
    memcpy(r->run + r->runlen, d, take);
    r->runlen += take;
    r->run_esc += esc;
    r->bytes[side] += take;
}

void fx_rec_end(fx_rec *r, enum fx_rec_side side, int reset)
{
    static const char *const text[2][2] = {
        { "client-shutdown\n", "client-abort\n" }, { "server-shutdown\n", "server-abort\n" }
    };
    if (!r || r->truncated || r->ended[side])
        return;
    if (r->runside >= 0)
        flush_run(r);
    if (!room_for_step(r))
        return;
    r->ended[side] = 1;
    add_step(r, text[side][reset ? 1 : 0]);
}

int fx_rec_truncated(const fx_rec *r)
{
    return r->truncated;
}

size_t fx_rec_payload(const fx_rec *r)
{
    return r->bytes[0] + r->bytes[1];
}

/* File names keep [A-Za-z0-9._-] of the rule name. */
static void safe_name(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (; *in && o + 1 < len && o < 48; in++) {
        int keep = (*in >= 'a' && *in <= 'z') || (*in >= 'A' && *in <= 'Z') ||
                   (*in >= '0' && *in <= '9') || *in == '-' || *in == '_' ||
                   (*in == '.' && o > 0);
        out[o++] = keep ? *in : '_';
    }
    if (!o)
        out[o++] = '_';
    out[o] = 0;
}

int fx_rec_write(fx_rec *r, char *path, size_t pathlen, char *err, size_t errlen)
{
    char name[64], stamp[32], *tmp = NULL;
    struct tm tm;
    fx_text all = { 0 };
    int fd = -1, rc = -1;
    FILE *f = NULL;

    if (errlen)
        err[0] = 0;
    if (r->runside >= 0)
        flush_run(r);
    fx_text_add(&all, r->hdr.p, r->hdr.len);
    if (r->body.len)
        fx_text_add(&all, r->body.p, r->body.len);
    if (r->truncated)
        fx_text_printf(&all, "# TRUNCATED: the recording reached its cap of %zu bytes "
                       "(record-max-bytes) after %zu bytes from the client and %zu from the "
                       "server; nothing later was recorded\n", r->max, r->bytes[0], r->bytes[1]);
    if (!r->steps)
        fx_text_printf(&all, "%s", "# nothing was sent: the connection ended without data\n"
                       "expect-closed\n");
    if (all.oom || r->body.oom) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    safe_name(r->rule, name, sizeof(name));
    gmtime_r(&r->start, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    if (asprintf(&tmp, "%s/.%s-c%lu.XXXXXX", r->dir, name, r->id) < 0) {
        tmp = NULL;
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    if ((fd = mkstemp(tmp)) < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    if (!(f = fdopen(fd, "w"))) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto cleanup;
    }
    if (fwrite(all.p, 1, all.len, f) != all.len || fflush(f) != 0 || ferror(f)) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        fclose(f);
        unlink(tmp);
        goto cleanup;
    }
    fclose(f);
    /* link(2) never replaces a file: a name taken (same rule, second and
     * connection id after a restart) gets a suffix. */
    for (int n = 1; n < 1000; n++) {
        if (n == 1)
            snprintf(path, pathlen, "%s/%s-%s-c%lu.fwxs", r->dir, name, stamp, r->id);
        else
            snprintf(path, pathlen, "%s/%s-%s-c%lu-%d.fwxs", r->dir, name, stamp, r->id, n);
        if (link(tmp, path) == 0) {
            rc = 0;
            break;
        }
        if (errno != EEXIST) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            break;
        }
    }
    if (rc != 0 && !err[0])
        snprintf(err, errlen, "%s: every name is taken", path);
    unlink(tmp);
cleanup:
    free(tmp);
    fx_text_free(&all);
    return rc;
}

void fx_rec_free(fx_rec *r)
{
    if (!r)
        return;
    fx_text_free(&r->hdr);
    fx_text_free(&r->body);
    free(r->run);
    free(r->dir);
    free(r->rule);
    free(r);
}
