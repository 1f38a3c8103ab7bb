/*
 * fxconf.c - configuration parsing and validation (see fxconf.h).
 *
 * Owns the fx_config model and the mapping from INI text to it.  libinih
 * does the INI syntax; we feed it lines through our own reader, which is
 * how we know the physical line number of everything (the Debian build of
 * libinih 55 does not pass line numbers to the handler), see section
 * headers even when a section has no keys, and strip indentation so that
 * an indented key is never taken for a continuation of the previous value.
 */
#define _GNU_SOURCE
#include "fxconf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>

#include "fxlog.h"

enum fx_sec_kind { FX_SEC_NONE = 0, FX_SEC_HOST, FX_SEC_FILTER, FX_SEC_RULE, FX_SEC_ABI };

/* Nesting of [abi] include = FILE. */
#define FX_INCLUDE_MAX 8

#define FX_MSG_MAX 512

static const char *const fx_host_keys[] = {
    "workers", "log-level", "max-sessions", "connect-timeout",
    "idle-timeout", "max-buffer", "trace", "max-faults", "on-disabled-filter",
    "hang-timeout", "control", "metrics", "record", "record-max-bytes", "user", "secondary-timeout",
    "restart-limit", "restart-delay", "reload-drain", "session-timeout", "reclaim-leaks",
    "poll-spin", NULL
};
static const char *const fx_filter_keys[] = {
    "path", "clsid", "enabled", "profile", "setting.NAME", NULL
};
static const char *const fx_rule_keys[] = {
    "type", "listen", "target", "protocol", "udp-timeout", "secondary-only", NULL
};
/* [abi]: include, and every overridable name. */
static const char *const fx_abi_keys[] = {
    "include",
#define FX_ABI_GUID(n) #n,
#define FX_ABI_NUM(n) #n,
#define FX_ABI_INT(n) #n,
#include "fxabi_names.h"
#undef FX_ABI_GUID
#undef FX_ABI_NUM
#undef FX_ABI_INT
    NULL
};

static void fx_msg(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fx_msg(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    if (buf == NULL || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* ---- small parsers ---------------------------------------------------- */

static int fx_parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    unsigned long long v = 0;
    if (s == NULL || *s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int fx_parse_size(const char *s, unsigned long long max, unsigned long long *out)
{
    char num[32];
    size_t n = strlen(s);
    unsigned long long mult = 1, v;

    if (n == 0 || n >= sizeof(num))
        return -1;
    memcpy(num, s, n + 1);
    switch (num[n - 1]) {
    case 'k': case 'K': mult = 1024ull; num[--n] = '\0'; break;
    case 'm': case 'M': mult = 1024ull * 1024ull; num[--n] = '\0'; break;
    default: break;
    }
    if (fx_parse_uint(num, max / mult, &v) < 0)
        return -1;
    *out = v * mult;
    return 0;
}

static int fx_parse_bool(const char *s)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

static int fx_hex(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int fx_guid_parse(const char *text, fx_guid *out)
{
    /* Hex digits per group; between groups a '-'. */
    static const int groups[] = { 8, 4, 4, 4, 12 };
    unsigned char bytes[16];
    size_t nb = 0;
    const char *p = text;
    int braced;

    if (text == NULL)
        return -1;
    braced = (*p == '{');
    if (braced)
        p++;
    for (int g = 0; g < 5; g++) {
        if (g > 0 && *p++ != '-')
            return -1;
        for (int i = 0; i < groups[g]; i += 2) {
            int hi = fx_hex((unsigned char)p[0]), lo;
            if (hi < 0)
                return -1;
            lo = fx_hex((unsigned char)p[1]);
            if (lo < 0)
                return -1;
            bytes[nb++] = (unsigned char)(hi << 4 | lo);
            p += 2;
        }
    }
    if (braced && *p++ != '}')
        return -1;
    if (*p != '\0')
        return -1;
    out->data1 = (uint32_t)bytes[0] << 24 | (uint32_t)bytes[1] << 16 |
                 (uint32_t)bytes[2] << 8 | bytes[3];
    out->data2 = (uint16_t)(bytes[4] << 8 | bytes[5]);
    out->data3 = (uint16_t)(bytes[6] << 8 | bytes[7]);
    memcpy(out->data4, bytes + 8, 8);
    return 0;
}

void fx_guid_format(const fx_guid *g, char *buf, size_t len)
{
    snprintf(buf, len, "{%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X}",
             (unsigned)g->data1, (unsigned)g->data2, (unsigned)g->data3,
             g->data4[0], g->data4[1], g->data4[2], g->data4[3],
             g->data4[4], g->data4[5], g->data4[6], g->data4[7]);
}

const char *fx_profile_name(enum fx_profile p)
{
    switch (p) {
    case FX_PROFILE_ISA2000: return "isa2000";
    case FX_PROFILE_TMG:     return "tmg";
    default:                 return "auto";
    }
}

/* Case-insensitive Levenshtein distance; keys are short (inih caps them at
 * 50 bytes), longer input just never matches. */
static size_t fx_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[64];

    if (la >= 63 || lb >= 63)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Writes the nearest known key (close enough to be a typo) to out. */
static int fx_suggest(const char *key, const char *const *known, char *out, size_t outlen)
{
    size_t best = (size_t)-1;
    const char *dot = strchr(key, '.');

    out[0] = '\0';
    for (size_t i = 0; known[i] != NULL; i++) {
        char cand[80];
        if (strcmp(known[i], "setting.NAME") == 0) {
            if (dot == NULL)
                continue;
            snprintf(cand, sizeof(cand), "setting%s", dot);
        } else {
            snprintf(cand, sizeof(cand), "%s", known[i]);
        }
        size_t d = fx_edit_distance(key, cand);
        if (d < best && d <= 2 && d < strlen(cand)) {
            best = d;
            snprintf(out, outlen, "%s", cand);
        }
    }
    return out[0] != '\0';
}

static void fx_unknown_key(const char *key, const char *secdesc, const char *const *known,
                           char *msg, size_t msglen)
{
    char sug[80], list[400] = "";
    if (fx_suggest(key, known, sug, sizeof(sug))) {
        fx_msg(msg, msglen, "unknown key '%s' in %s (did you mean '%s'?)", key, secdesc, sug);
        return;
    }
    for (size_t i = 0; known[i] != NULL; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "", known[i]);
    }
    fx_msg(msg, msglen, "unknown key '%s' in %s (known keys: %s)", key, secdesc, list);
}

/* ---- model ------------------------------------------------------------ */

fx_config *fx_config_new_empty(void)
{
    fx_config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return NULL;
    cfg->host.workers = 0;
    cfg->host.log_level = FX_LOG_INFO;
    cfg->host.max_sessions = 10000;
    cfg->host.connect_timeout = 10;
    cfg->host.idle_timeout = 300;
    cfg->host.session_timeout = 60;
    cfg->host.max_buffer = 262144;
    cfg->host.max_faults = 5;
    cfg->host.on_disabled = FX_DISABLED_REFUSE;
    cfg->host.hang_timeout = 30;
    cfg->host.secondary_timeout = 60;
    cfg->host.record_max = 4u << 20;
    cfg->host.restart_limit = 5;
    cfg->host.restart_delay = 1;
    cfg->host.reload_drain = 300;
    cfg->host.reclaim_leaks = 1;
    cfg->host.poll_spin = FX_POLL_SPIN_DEFAULT;
    return cfg;
}

static void fx_filter_free(fx_filter_conf *f)
{
    free(f->name);
    free(f->path);
    for (size_t i = 0; i < f->nsettings; i++) {
        free(f->settings[i].name);
        free(f->settings[i].value);
    }
    free(f->settings);
}

void fx_config_free(fx_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nfilters; i++)
        fx_filter_free(&cfg->filters[i]);
    for (size_t i = 0; i < cfg->nrules; i++)
        free(cfg->rules[i].name);
    for (size_t i = 0; i < cfg->nabi; i++) {
        free(cfg->abi[i].name);
        free(cfg->abi[i].file);
    }
    free(cfg->abi);
    free(cfg->filters);
    free(cfg->rules);
    free(cfg->host.trace);
    free(cfg->host.control);
    free(cfg->host.record);
    free(cfg->host.user);
    free(cfg->path);
    free(cfg);
}

static int fx_replace_str(char **dst, const char *src, char *msg, size_t msglen)
{
    char *s = strdup(src);
    if (s == NULL) {
        fx_msg(msg, msglen, "out of memory");
        return -1;
    }
    free(*dst);
    *dst = s;
    return 0;
}

static char *fx_trim(char *s)
{
    char *e;
    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* Splits "filter NAME" into kind and name, checking the shape.  name
 * points into buf.  Returns the kind, or FX_SEC_NONE with a message. */
static int fx_section_kind(const char *text, char *buf, size_t buflen, const char **name,
                           char *msg, size_t msglen)
{
    static const char *const kinds[] = { "host", "filter", "rule", "abi", NULL };
    char *t, *sp;
    int kind = FX_SEC_NONE;

    snprintf(buf, buflen, "%s", text);
    t = fx_trim(buf);
    sp = t + strcspn(t, " \t");
    if (*sp != '\0')
        *sp++ = '\0';
    *name = fx_trim(sp);

    if (strcasecmp(t, "host") == 0)
        kind = FX_SEC_HOST;
    else if (strcasecmp(t, "filter") == 0)
        kind = FX_SEC_FILTER;
    else if (strcasecmp(t, "rule") == 0)
        kind = FX_SEC_RULE;
    else if (strcasecmp(t, "abi") == 0)
        kind = FX_SEC_ABI;

    if (kind == FX_SEC_NONE) {
        char sug[80];
        if (fx_suggest(t, kinds, sug, sizeof(sug)))
            fx_msg(msg, msglen, "unknown section [%s] (did you mean [%s%s%s]?)", text, sug,
                   **name ? " " : "", *name);
        else
            fx_msg(msg, msglen, "unknown section [%s] (expected [host], [filter NAME], [rule NAME] or [abi])",
                   text);
        return FX_SEC_NONE;
    }
    if ((kind == FX_SEC_HOST || kind == FX_SEC_ABI) && **name != '\0') {
        fx_msg(msg, msglen, "section [%s] takes no name (found [%s])",
               kind == FX_SEC_HOST ? "host" : "abi", text);
        return FX_SEC_NONE;
    }
    if (kind != FX_SEC_HOST && kind != FX_SEC_ABI && **name == '\0') {
        fx_msg(msg, msglen, "section [%s] needs a name, e.g. [%s web]",
               kind == FX_SEC_FILTER ? "filter" : "rule",
               kind == FX_SEC_FILTER ? "filter" : "rule");
        return FX_SEC_NONE;
    }
    return kind;
}

static void *fx_grow(void *arr, size_t n, size_t elsize)
{
    /* Grow by one, keeping capacity implicit: configs are small. */
    return realloc(arr, (n + 1) * elsize);
}

/* Finds or creates the section.  *idx is its index in filters/rules.
 * *found tells whether it existed (and its line). */
static int fx_section_get(fx_config *cfg, int kind, const char *name, int line,
                          size_t *idx, int *found_line, char *msg, size_t msglen)
{
    *found_line = 0;
    if (kind == FX_SEC_FILTER) {
        for (size_t i = 0; i < cfg->nfilters; i++) {
            if (strcmp(cfg->filters[i].name, name) == 0) {
                *idx = i;
                *found_line = cfg->filters[i].line > 0 ? cfg->filters[i].line : -1;
                return 0;
            }
        }
        fx_filter_conf *nf = fx_grow(cfg->filters, cfg->nfilters, sizeof(*nf));
        if (nf == NULL)
            goto oom;
        cfg->filters = nf;
        fx_filter_conf *f = &nf[cfg->nfilters];
        memset(f, 0, sizeof(*f));
        if ((f->name = strdup(name)) == NULL)
            goto oom;
        f->line = line;
        f->enabled = 1;
        f->profile = FX_PROFILE_AUTO;
        *idx = cfg->nfilters++;
        return 0;
    }
    if (kind == FX_SEC_RULE) {
        for (size_t i = 0; i < cfg->nrules; i++) {
            if (strcmp(cfg->rules[i].name, name) == 0) {
                *idx = i;
                *found_line = cfg->rules[i].line > 0 ? cfg->rules[i].line : -1;
                return 0;
            }
        }
        fx_rule_conf *nr = fx_grow(cfg->rules, cfg->nrules, sizeof(*nr));
        if (nr == NULL)
            goto oom;
        cfg->rules = nr;
        fx_rule_conf *r = &nr[cfg->nrules];
        memset(r, 0, sizeof(*r));
        if ((r->name = strdup(name)) == NULL)
            goto oom;
        r->line = line;
        r->type = FX_RULE_PUBLISH;
        r->protocol = FX_PROTO_TCP;
        r->udp_timeout = FX_UDP_TIMEOUT_DEFAULT;
        *idx = cfg->nrules++;
        return 0;
    }
    *idx = 0;
    return 0;

oom:
    fx_msg(msg, msglen, "out of memory");
    return -1;
}

/* ---- setting one key -------------------------------------------------- */

static int fx_bad_value(const char *key, const char *value, const char *expected,
                        char *msg, size_t msglen)
{
    fx_msg(msg, msglen, "bad value '%s' for '%s' (expected %s)", value, key, expected);
    return -1;
}

static int fx_set_host(fx_config *cfg, const char *key, const char *value,
                       char *msg, size_t msglen)
{
    fx_host_conf *h = &cfg->host;
    unsigned long long v;

    if (strcasecmp(key, "workers") == 0) {
        if (fx_parse_uint(value, 64, &v) < 0)
            return fx_bad_value(key, value, "a number from 1 to 64, or 0 for one per CPU core",
                                msg, msglen);
        h->workers = (int)v;
    } else if (strcasecmp(key, "poll-spin") == 0) {
        if (fx_parse_uint(value, 1000, &v) < 0)
            return fx_bad_value(key, value, "microseconds from 0 to 1000", msg, msglen);
        h->poll_spin = (unsigned)v;
    } else if (strcasecmp(key, "log-level") == 0) {
        int lv = fx_log_level_parse(value);
        if (lv < 0)
            return fx_bad_value(key, value, "error, warn, notice, info or debug", msg, msglen);
        h->log_level = lv;
    } else if (strcasecmp(key, "max-sessions") == 0) {
        if (fx_parse_uint(value, 1000000, &v) < 0 || v == 0)
            return fx_bad_value(key, value, "a number from 1 to 1000000", msg, msglen);
        h->max_sessions = (unsigned)v;
    } else if (strcasecmp(key, "connect-timeout") == 0) {
        if (fx_parse_uint(value, 3600, &v) < 0 || v == 0)
            return fx_bad_value(key, value, "seconds from 1 to 3600", msg, msglen);
        h->connect_timeout = (unsigned)v;
    } else if (strcasecmp(key, "idle-timeout") == 0) {
        if (fx_parse_uint(value, 604800, &v) < 0)
            return fx_bad_value(key, value, "seconds from 1 to 604800, or 0 for never", msg, msglen);
        h->idle_timeout = (unsigned)v;
    } else if (strcasecmp(key, "session-timeout") == 0) {
        if (fx_parse_uint(value, 604800, &v) < 0)
            return fx_bad_value(key, value, "seconds from 1 to 604800, or 0 for never", msg, msglen);
        h->session_timeout = (unsigned)v;
    } else if (strcasecmp(key, "secondary-timeout") == 0) {
        if (fx_parse_uint(value, 86400, &v) < 0 || v == 0)
            return fx_bad_value(key, value, "seconds from 1 to 86400", msg, msglen);
        h->secondary_timeout = (unsigned)v;
    } else if (strcasecmp(key, "max-buffer") == 0) {
        if (fx_parse_size(value, 64ull << 20, &v) < 0 || v < 4096)
            return fx_bad_value(key, value, "bytes from 4096 to 64m, optionally with suffix k or m",
                                msg, msglen);
        h->max_buffer = (size_t)v;
    } else if (strcasecmp(key, "max-faults") == 0) {
        if (fx_parse_uint(value, 1000000, &v) < 0)
            return fx_bad_value(key, value, "a number from 1 to 1000000, or 0 for never disabling",
                                msg, msglen);
        h->max_faults = (unsigned)v;
    } else if (strcasecmp(key, "reclaim-leaks") == 0) {
        int b = fx_parse_bool(value);
        if (b < 0)
            return fx_bad_value(key, value, "yes, no, true, false, 1 or 0", msg, msglen);
        h->reclaim_leaks = b;
    } else if (strcasecmp(key, "on-disabled-filter") == 0) {
        if (strcasecmp(value, "refuse") == 0)
            h->on_disabled = FX_DISABLED_REFUSE;
        else if (strcasecmp(value, "bypass") == 0)
            h->on_disabled = FX_DISABLED_BYPASS;
        else
            return fx_bad_value(key, value, "refuse or bypass", msg, msglen);
    } else if (strcasecmp(key, "hang-timeout") == 0) {
        if (fx_parse_uint(value, 86400, &v) < 0)
            return fx_bad_value(key, value, "seconds from 1 to 86400, or 0 for no watchdog",
                                msg, msglen);
        h->hang_timeout = (unsigned)v;
    } else if (strcasecmp(key, "restart-limit") == 0) {
        if (fx_parse_uint(value, 1000, &v) < 0)
            return fx_bad_value(key, value, "restarts per minute from 1 to 1000, or 0 for "
                                "never restarting the worker", msg, msglen);
        h->restart_limit = (unsigned)v;
    } else if (strcasecmp(key, "restart-delay") == 0) {
        if (fx_parse_uint(value, 300, &v) < 0)
            return fx_bad_value(key, value, "seconds from 0 to 300", msg, msglen);
        h->restart_delay = (unsigned)v;
    } else if (strcasecmp(key, "reload-drain") == 0) {
        if (fx_parse_uint(value, 86400, &v) < 0)
            return fx_bad_value(key, value, "seconds from 0 to 86400", msg, msglen);
        h->reload_drain = (unsigned)v;
    } else if (strcasecmp(key, "trace") == 0) {
        if (*value == '\0')
            return fx_bad_value(key, value, "a file path", msg, msglen);
        return fx_replace_str(&h->trace, value, msg, msglen);
    } else if (strcasecmp(key, "record") == 0) {
        if (*value == '\0')
            return fx_bad_value(key, value, "a directory for the recorded session scripts",
                                msg, msglen);
        return fx_replace_str(&h->record, value, msg, msglen);
    } else if (strcasecmp(key, "record-max-bytes") == 0) {
        if (fx_parse_size(value, 16ull << 20, &v) < 0 || v < 4096)
            return fx_bad_value(key, value, "bytes from 4096 to 16m, optionally with suffix k or m",
                                msg, msglen);
        h->record_max = (size_t)v;
    } else if (strcasecmp(key, "user") == 0) {
        /* A login name (checked against the user database at start). */
        if (*value == '\0' || strlen(value) > 64 || strpbrk(value, " \t:/") != NULL)
            return fx_bad_value(key, value, "a user name to run as after binding (e.g. fwxshim)",
                                msg, msglen);
        return fx_replace_str(&h->user, value, msg, msglen);
    } else if (strcasecmp(key, "control") == 0) {
        /* sockaddr_un's sun_path holds 107 bytes and the NUL. */
        if (*value != '/' || strlen(value) > 107)
            return fx_bad_value(key, value, "an absolute path of at most 107 bytes for the "
                                "control socket", msg, msglen);
        return fx_replace_str(&h->control, value, msg, msglen);
    } else if (strcasecmp(key, "metrics") == 0) {
        char why[128];
        fx_sockaddr sa;
        int salen = sizeof(sa);
        if (fx_addr_parse(value, &sa, &salen, why, sizeof(why)) != 0)
            return fx_bad_value(key, value, "a loopback address and port, e.g. 127.0.0.1:9469",
                                msg, msglen);
        if (!fx_addr_is_loopback(&sa, salen)) {
            fx_msg(msg, msglen, "bad value '%s' for 'metrics' (the metrics port has no "
                   "authentication: it must be a loopback address, 127.0.0.0/8 or [::1], "
                   "e.g. 127.0.0.1:9469)", value);
            return -1;
        }
        h->metrics = sa;
        h->metrics_len = salen;
        h->has_metrics = 1;
    } else {
        fx_unknown_key(key, "[host]", fx_host_keys, msg, msglen);
        return -1;
    }
    return 0;
}

static int fx_set_filter(fx_filter_conf *f, const char *key, const char *value,
                         char *msg, size_t msglen)
{
    char secdesc[96];

    if (strcasecmp(key, "path") == 0) {
        if (*value == '\0')
            return fx_bad_value(key, value, "the path of the filter DLL", msg, msglen);
        return fx_replace_str(&f->path, value, msg, msglen);
    }
    if (strcasecmp(key, "clsid") == 0) {
        if (fx_guid_parse(value, &f->clsid) < 0)
            return fx_bad_value(key, value, "a GUID like {4B8E9C5A-0D12-4F6B-9A3E-2C7D1F0E8B64}",
                                msg, msglen);
        f->has_clsid = 1;
        return 0;
    }
    if (strcasecmp(key, "enabled") == 0) {
        int b = fx_parse_bool(value);
        if (b < 0)
            return fx_bad_value(key, value, "yes, no, true, false, 1 or 0", msg, msglen);
        f->enabled = b;
        return 0;
    }
    if (strcasecmp(key, "profile") == 0) {
        if (strcasecmp(value, "isa2000") == 0)
            f->profile = FX_PROFILE_ISA2000;
        else if (strcasecmp(value, "tmg") == 0)
            f->profile = FX_PROFILE_TMG;
        else
            return fx_bad_value(key, value, "isa2000 or tmg", msg, msglen);
        return 0;
    }
    if (strncasecmp(key, "setting.", 8) == 0) {
        const char *name = key + 8;
        if (*name == '\0') {
            fx_msg(msg, msglen, "empty setting name in '%s' (expected setting.NAME = VALUE)", key);
            return -1;
        }
        for (size_t i = 0; i < f->nsettings; i++)
            if (strcmp(f->settings[i].name, name) == 0)
                return fx_replace_str(&f->settings[i].value, value, msg, msglen);
        fx_setting *ns = fx_grow(f->settings, f->nsettings, sizeof(*ns));
        if (ns == NULL)
            goto oom;
        f->settings = ns;
        ns[f->nsettings].name = strdup(name);
        ns[f->nsettings].value = strdup(value);
        if (ns[f->nsettings].name == NULL || ns[f->nsettings].value == NULL) {
            free(ns[f->nsettings].name);
            free(ns[f->nsettings].value);
            goto oom;
        }
        f->nsettings++;
        return 0;
    }
    snprintf(secdesc, sizeof(secdesc), "[filter %s]", f->name);
    fx_unknown_key(key, secdesc, fx_filter_keys, msg, msglen);
    return -1;

oom:
    fx_msg(msg, msglen, "out of memory");
    return -1;
}

static int fx_set_addr(const char *key, const char *value, fx_sockaddr *sa, int *salen,
                       char *msg, size_t msglen)
{
    char perr[256];
    int len = (int)sizeof(*sa);
    if (fx_addr_parse(value, sa, &len, perr, sizeof(perr)) < 0) {
        fx_msg(msg, msglen, "bad value for '%s': %s", key, perr);
        return -1;
    }
    *salen = len;
    return 0;
}

static int fx_set_rule(fx_rule_conf *r, const char *key, const char *value, int line,
                       char *msg, size_t msglen)
{
    char secdesc[96];

    if (strcasecmp(key, "type") == 0) {
        if (strcasecmp(value, "publish") == 0)
            r->type = FX_RULE_PUBLISH;
        else if (strcasecmp(value, "outbound") == 0)
            r->type = FX_RULE_OUTBOUND;
        else
            return fx_bad_value(key, value, "publish or outbound", msg, msglen);
        r->type_line = line;
        return 0;
    }
    if (strcasecmp(key, "listen") == 0) {
        if (fx_set_addr(key, value, &r->listen, &r->listen_len, msg, msglen) < 0)
            return -1;
        r->has_listen = 1;
        r->listen_line = line;
        return 0;
    }
    if (strcasecmp(key, "target") == 0) {
        fx_sockaddr sa;
        int len;
        if (fx_set_addr(key, value, &sa, &len, msg, msglen) < 0)
            return -1;
        /* Port bytes sit at offset 2 in both sockaddr_in and sockaddr_in6. */
        if (sa.bytes[2] == 0 && sa.bytes[3] == 0) {
            fx_msg(msg, msglen, "bad value for '%s': port 0 in '%s' is not a destination", key, value);
            return -1;
        }
        r->target = sa;
        r->target_len = len;
        r->has_target = 1;
        r->target_line = line;
        return 0;
    }
    if (strcasecmp(key, "protocol") == 0) {
        if (strcasecmp(value, "tcp") == 0)
            r->protocol = FX_PROTO_TCP;
        else if (strcasecmp(value, "udp") == 0)
            r->protocol = FX_PROTO_UDP;
        else
            return fx_bad_value(key, value, "tcp or udp", msg, msglen);
        return 0;
    }
    if (strcasecmp(key, "secondary-only") == 0) {
        int b = fx_parse_bool(value);
        if (b < 0)
            return fx_bad_value(key, value, "yes or no", msg, msglen);
        r->secondary_only = b;
        r->secondary_only_line = line;
        return 0;
    }
    if (strcasecmp(key, "udp-timeout") == 0) {
        unsigned long long v;
        if (fx_parse_uint(value, 86400, &v) < 0 || v == 0)
            return fx_bad_value(key, value, "seconds from 1 to 86400", msg, msglen);
        r->udp_timeout = (unsigned)v;
        return 0;
    }
    snprintf(secdesc, sizeof(secdesc), "[rule %s]", r->name);
    fx_unknown_key(key, secdesc, fx_rule_keys, msg, msglen);
    return -1;
}

/* [abi] NAME = VALUE: a GUID for IID_* and CLSID_*, else a 32-bit number
 * (decimal or 0x hex).  Each name once over all files. */
static int fx_set_abi(fx_config *cfg, const char *key, const char *value, const char *file,
                      int line, char *msg, size_t msglen)
{
    fx_abi_value v;
    const char *canon = NULL;

    for (size_t i = 1; fx_abi_keys[i] != NULL; i++)
        if (strcmp(fx_abi_keys[i], key) == 0)
            canon = fx_abi_keys[i];
    if (canon == NULL) {
        /* Case slips get the exact spelling back. */
        for (size_t i = 1; fx_abi_keys[i] != NULL; i++)
            if (strcasecmp(fx_abi_keys[i], key) == 0) {
                fx_msg(msg, msglen, "unknown name '%s' in [abi] (names are case-sensitive: did you mean '%s'?)",
                       key, fx_abi_keys[i]);
                return -1;
            }
        fx_unknown_key(key, "[abi]", fx_abi_keys, msg, msglen);
        return -1;
    }
    for (size_t i = 0; i < cfg->nabi; i++)
        if (strcmp(cfg->abi[i].name, canon) == 0) {
            if (cfg->abi[i].file != NULL)
                fx_msg(msg, msglen, "%s is already set (at %s:%d)", canon, cfg->abi[i].file,
                       cfg->abi[i].line);
            else
                fx_msg(msg, msglen, "%s is already set", canon);
            return -1;
        }
    memset(&v, 0, sizeof(v));
    v.is_guid = strncmp(canon, "IID_", 4) == 0 || strncmp(canon, "CLSID_", 6) == 0;
    if (v.is_guid) {
        if (fx_guid_parse(value, &v.guid) < 0) {
            fx_msg(msg, msglen, "%s: '%s' is not a GUID (expected {XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX})",
                   canon, value);
            return -1;
        }
    } else {
        char *end;
        unsigned long long n;
        errno = 0;
        n = strtoull(value, &end, 0);
        if (*value == '\0' || *value == '-' || *end != '\0' || errno != 0 || n > 0xFFFFFFFFull) {
            fx_msg(msg, msglen, "%s: '%s' is not a 32-bit number (decimal, or hex with 0x)",
                   canon, value);
            return -1;
        }
        v.value = (uint32_t)n;
    }
    if ((v.name = strdup(canon)) == NULL || (file != NULL && (v.file = strdup(file)) == NULL)) {
        free(v.name);
        fx_msg(msg, msglen, "out of memory");
        return -1;
    }
    v.line = line;
    fx_abi_value *na = fx_grow(cfg->abi, cfg->nabi, sizeof(*na));
    if (na == NULL) {
        free(v.name);
        free(v.file);
        fx_msg(msg, msglen, "out of memory");
        return -1;
    }
    cfg->abi = na;
    cfg->abi[cfg->nabi++] = v;
    return 0;
}

static int fx_set_in(fx_config *cfg, int kind, size_t idx, const char *key, const char *value,
                     int line, char *msg, size_t msglen)
{
    if (value == NULL)
        value = "";
    switch (kind) {
    case FX_SEC_ABI:
        if (strcmp(key, "include") == 0) {
            fx_msg(msg, msglen, "include is only read from a file");
            return -1;
        }
        return fx_set_abi(cfg, key, value, NULL, line, msg, msglen);
    case FX_SEC_HOST:   return fx_set_host(cfg, key, value, msg, msglen);
    case FX_SEC_FILTER: return fx_set_filter(&cfg->filters[idx], key, value, msg, msglen);
    case FX_SEC_RULE:   return fx_set_rule(&cfg->rules[idx], key, value, line, msg, msglen);
    default:
        fx_msg(msg, msglen, "key '%s' is outside any section (put it under [host], [filter NAME], [rule NAME] or [abi])",
               key);
        return -1;
    }
}

int fx_config_set(fx_config *cfg, const char *section, const char *key,
                  const char *value, char *err, size_t errlen)
{
    char buf[256];
    const char *name;
    size_t idx;
    int kind, found;

    kind = fx_section_kind(section, buf, sizeof(buf), &name, err, errlen);
    if (kind == FX_SEC_NONE)
        return -1;
    if (fx_section_get(cfg, kind, name, 0, &idx, &found, err, errlen) < 0)
        return -1;
    return fx_set_in(cfg, kind, idx, key, value, 0, err, errlen);
}

int fx_config_add_filter(fx_config *cfg, const char *name, const char *path,
                         const char *clsid, char *err, size_t errlen)
{
    char sec[256];
    snprintf(sec, sizeof(sec), "filter %s", name);
    if (fx_config_set(cfg, sec, "path", path, err, errlen) < 0)
        return -1;
    if (clsid != NULL && fx_config_set(cfg, sec, "clsid", clsid, err, errlen) < 0)
        return -1;
    return 0;
}

int fx_config_add_rule(fx_config *cfg, const char *name, const char *type,
                       const char *listen, const char *target,
                       const char *protocol, char *err, size_t errlen)
{
    char sec[256];
    snprintf(sec, sizeof(sec), "rule %s", name);
    if (type != NULL && fx_config_set(cfg, sec, "type", type, err, errlen) < 0)
        return -1;
    if (fx_config_set(cfg, sec, "listen", listen, err, errlen) < 0)
        return -1;
    if (target != NULL && fx_config_set(cfg, sec, "target", target, err, errlen) < 0)
        return -1;
    if (protocol != NULL && fx_config_set(cfg, sec, "protocol", protocol, err, errlen) < 0)
        return -1;
    return 0;
}

/* ---- whole-config checks ---------------------------------------------- */

static int fx_check_fail(const fx_config *cfg, int line, char *err, size_t errlen,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int fx_check_fail(const fx_config *cfg, int line, char *err, size_t errlen,
                         const char *fmt, ...)
{
    char msg[FX_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cfg->path != NULL && line > 0)
        fx_msg(err, errlen, "%s:%d: %s", cfg->path, line, msg);
    else if (cfg->path != NULL)
        fx_msg(err, errlen, "%s: %s", cfg->path, msg);
    else
        fx_msg(err, errlen, "%s", msg);
    return -1;
}

int fx_config_check(const fx_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nfilters; i++) {
        const fx_filter_conf *f = &cfg->filters[i];
        if (f->path == NULL)
            return fx_check_fail(cfg, f->line, err, errlen,
                                 "[filter %s]: missing required key 'path'", f->name);
    }
    for (size_t i = 0; i < cfg->nrules; i++) {
        const fx_rule_conf *r = &cfg->rules[i];
        if (!r->has_listen)
            return fx_check_fail(cfg, r->line, err, errlen,
                                 "[rule %s]: missing required key 'listen'", r->name);
        if (r->type == FX_RULE_PUBLISH && !r->has_target)
            return fx_check_fail(cfg, r->line, err, errlen,
                                 "[rule %s]: missing required key 'target' (a publish rule needs one)",
                                 r->name);
        if (r->type == FX_RULE_OUTBOUND && r->has_target)
            return fx_check_fail(cfg, r->target_line ? r->target_line : r->line, err, errlen,
                                 "[rule %s]: 'target' is not allowed in an outbound rule (it goes to the original destination)",
                                 r->name);
        if (r->type != FX_RULE_OUTBOUND && r->secondary_only)
            return fx_check_fail(cfg, r->secondary_only_line ? r->secondary_only_line : r->line,
                                 err, errlen,
                                 "[rule %s]: 'secondary-only' applies to outbound rules only",
                                 r->name);
        for (size_t j = 0; j < i; j++) {
            const fx_rule_conf *o = &cfg->rules[j];
            char a[FX_ADDRSTRLEN];
            if (o->protocol != r->protocol || o->listen_len != r->listen_len ||
                memcmp(&o->listen, &r->listen, (size_t)r->listen_len) != 0)
                continue;
            if (r->listen.bytes[2] == 0 && r->listen.bytes[3] == 0)
                continue;   /* port 0: each gets its own free port */
            fx_addr_format(&r->listen, r->listen_len, a, sizeof(a));
            return fx_check_fail(cfg, r->listen_line ? r->listen_line : r->line, err, errlen,
                                 "[rule %s]: listen address %s %s is already used by [rule %s]",
                                 r->name, r->protocol == FX_PROTO_UDP ? "udp" : "tcp", a, o->name);
        }
    }
    if (cfg->nrules == 0)
        return fx_check_fail(cfg, 0, err, errlen,
                             "no rules: add a [rule NAME] section with 'listen' and 'target'");
    return 0;
}

/* ---- loading a file --------------------------------------------------- */

struct fx_load {
    fx_config *cfg;
    const char *path;
    int depth;                /* of [abi] include nesting */
    char *err_full;           /* an included file's error, already "FILE:LINE: ..." */
    FILE *f;
    char *line;
    size_t linecap;
    int lineno;
    int err_line;
    char err[FX_MSG_MAX];
    int kind;                 /* current section */
    size_t idx;
    int host_line;
    struct fx_seen { char *key; int line; } *seen;   /* keys of the current section */
    size_t nseen;
    size_t capseen;
};

static void fx_load_error(struct fx_load *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void fx_load_error(struct fx_load *ld, const char *fmt, ...)
{
    va_list ap;
    if (ld->err_line)
        return;
    ld->err_line = ld->lineno > 0 ? ld->lineno : 1;
    va_start(ap, fmt);
    vsnprintf(ld->err, sizeof(ld->err), fmt, ap);
    va_end(ap);
}

static void fx_load_forget_keys(struct fx_load *ld)
{
    for (size_t i = 0; i < ld->nseen; i++)
        free(ld->seen[i].key);
    ld->nseen = 0;
}

static int fx_load_remember_key(struct fx_load *ld, const char *key)
{
    if (ld->nseen == ld->capseen) {
        size_t ncap = ld->capseen ? ld->capseen * 2 : 16;
        struct fx_seen *ns = realloc(ld->seen, ncap * sizeof(*ns));
        if (ns == NULL)
            return -1;
        ld->seen = ns;
        ld->capseen = ncap;
    }
    if ((ld->seen[ld->nseen].key = strdup(key)) == NULL)
        return -1;
    ld->seen[ld->nseen++].line = ld->lineno;
    return 0;
}

static void fx_load_section(struct fx_load *ld, const char *text)
{
    char buf[256], msg[FX_MSG_MAX];
    const char *name;
    size_t idx;
    int found, kind;

    kind = fx_section_kind(text, buf, sizeof(buf), &name, msg, sizeof(msg));
    if (kind == FX_SEC_NONE) {
        fx_load_error(ld, "%s", msg);
        return;
    }
    if (kind == FX_SEC_HOST) {
        if (ld->host_line) {
            fx_load_error(ld, "duplicate section [host] (first defined on line %d)", ld->host_line);
            return;
        }
        ld->host_line = ld->lineno;
    }
    if (fx_section_get(ld->cfg, kind, name, ld->lineno, &idx, &found, msg, sizeof(msg)) < 0) {
        fx_load_error(ld, "%s", msg);
        return;
    }
    if (found) {
        fx_load_error(ld, "duplicate section [%s %s] (first defined on line %d)",
                      kind == FX_SEC_FILTER ? "filter" : "rule", name, found);
        return;
    }
    ld->kind = kind;
    ld->idx = idx;
    fx_load_forget_keys(ld);
}

/* fgets-style reader for ini_parse_stream: one physical line per call, so
 * inih's line count and ours agree. */
static char *fx_load_reader(char *str, int num, void *stream)
{
    struct fx_load *ld = stream;
    ssize_t n;
    char *s, *e;
    size_t len;

    if (ld->err_line)
        return NULL;
    n = getline(&ld->line, &ld->linecap, ld->f);
    if (n < 0) {
        if (ferror(ld->f)) {
            ld->lineno++;
            fx_load_error(ld, "read error: %s", strerror(errno));
        }
        return NULL;
    }
    ld->lineno++;
    s = ld->line;
    if (ld->lineno == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
        (unsigned char)s[2] == 0xBF)
        s += 3;
    if (strlen(s) != (size_t)(n - (s - ld->line))) {
        fx_load_error(ld, "NUL byte in line (is this a text file?)");
        return NULL;
    }
    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == '\n' || e[-1] == '\r'))
        *--e = '\0';
    len = (size_t)(e - s);
    if (num < 4 || len > (size_t)num - 3) {
        fx_load_error(ld, "line too long (at most %d characters)", num > 3 ? num - 3 : 0);
        return NULL;
    }
    if (*s == '[') {
        char *close = strchr(s, ']');
        if (close == NULL) {
            fx_load_error(ld, "missing ']' in section header");
            return NULL;
        }
        *close = '\0';
        fx_load_section(ld, s + 1);
        *close = ']';
        if (ld->err_line)
            return NULL;
    }
    memcpy(str, s, len + 1);
    return str;
}

static int fx_load_include(struct fx_load *ld, const char *file);

static int fx_load_handler(void *user, const char *section, const char *name, const char *value)
{
    struct fx_load *ld = user;
    char msg[FX_MSG_MAX];

    (void)section;  /* we track sections ourselves, with their lines */
    if (ld->err_line)
        return 0;
    if (name == NULL)
        return 1;   /* section-start call, if libinih was built with it */

    /* A repeated key is almost always a copy-paste slip: refuse it rather
     * than let the last one win silently. */
    for (size_t i = 0; i < ld->nseen; i++) {
        if (strcasecmp(ld->seen[i].key, name) == 0) {
            fx_load_error(ld, "duplicate key '%s' (first set on line %d)", name, ld->seen[i].line);
            return 0;
        }
    }
    if (ld->kind == FX_SEC_ABI && strcmp(name, "include") == 0) {
        if (fx_load_include(ld, value ? value : "") < 0)
            return 0;
    } else if (ld->kind == FX_SEC_ABI) {
        if (fx_set_abi(ld->cfg, name, value ? value : "", ld->path, ld->lineno, msg, sizeof(msg)) < 0) {
            fx_load_error(ld, "%s", msg);
            return 0;
        }
    } else if (fx_set_in(ld->cfg, ld->kind, ld->idx, name, value, ld->lineno, msg, sizeof(msg)) < 0) {
        fx_load_error(ld, "%s", msg);
        return 0;
    }
    if (fx_load_remember_key(ld, name) < 0) {
        fx_load_error(ld, "out of memory");
        return 0;
    }
    return 1;
}

/* Parses an opened stream into cfg; path names it in messages.  Takes f.  0, or -1
 * with "FILE:LINE: message" in err. */
static int fx_load_stream(fx_config *cfg, FILE *f, const char *path, int depth, char *err,
                          size_t errlen)
{
    struct fx_load ld;
    int rc, ret = -1;

    memset(&ld, 0, sizeof(ld));
    ld.cfg = cfg;
    ld.path = path;
    ld.depth = depth;
    ld.f = f;
    rc = ini_parse_stream(fx_load_reader, &ld, fx_load_handler, &ld);
    if (rc > 0 && (ld.err_line == 0 || rc < ld.err_line)) {
        fx_msg(err, errlen, "%s:%d: syntax error (expected [section] or key = value)", path, rc);
        goto out;
    }
    if (ld.err_full) {
        fx_msg(err, errlen, "%s", ld.err_full);
        goto out;
    }
    if (ld.err_line) {
        fx_msg(err, errlen, "%s:%d: %s", path, ld.err_line, ld.err);
        goto out;
    }
    if (rc < 0) {
        fx_msg(err, errlen, "%s: out of memory", path);
        goto out;
    }
    ret = 0;
out:
    fclose(ld.f);
    free(ld.line);
    free(ld.err_full);
    fx_load_forget_keys(&ld);
    free(ld.seen);
    return ret;
}

/* Parses one file into cfg: 0, or -1 with "FILE:LINE: message" in err. */
static int fx_load_file(fx_config *cfg, const char *path, int depth, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        fx_msg(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    return fx_load_stream(cfg, f, path, depth, err, errlen);
}

/* [abi] include = FILE: relative to the including file's directory. */
static int fx_load_include(struct fx_load *ld, const char *file)
{
    char path[4096], err[FX_MSG_MAX * 2];
    const char *slash = strrchr(ld->path, '/');

    if (*file == '\0') {
        fx_load_error(ld, "include: expected a file name");
        return -1;
    }
    if (ld->depth + 1 >= FX_INCLUDE_MAX) {
        fx_load_error(ld, "include %s: nested more than %d deep (does it include itself?)", file,
                      FX_INCLUDE_MAX);
        return -1;
    }
    if (file[0] == '/' || slash == NULL)
        snprintf(path, sizeof(path), "%s", file);
    else
        snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - ld->path), ld->path, file);
    if (fx_load_file(ld->cfg, path, ld->depth + 1, err, sizeof(err)) < 0) {
        if (strncmp(err, "cannot open ", 12) == 0) {
            fx_load_error(ld, "include: %s", err);
        } else {
            ld->err_line = ld->lineno;
            ld->err_full = strdup(err);
        }
        return -1;
    }
    return 0;
}

int fx_config_include(fx_config *cfg, const char *path, char *err, size_t errlen)
{
    return fx_load_file(cfg, path, 0, err, errlen);
}

/* A new config from an opened stream (taken), checked as a whole. */
static fx_config *fx_config_from_stream(FILE *f, const char *path, char *err, size_t errlen)
{
    fx_config *cfg = fx_config_new_empty();

    if (cfg == NULL || (cfg->path = strdup(path)) == NULL) {
        fx_msg(err, errlen, "%s: out of memory", path);
        fclose(f);
        goto fail;
    }
    if (fx_load_stream(cfg, f, path, 0, err, errlen) < 0)
        goto fail;
    if (fx_config_check(cfg, err, errlen) < 0)
        goto fail;
    return cfg;

fail:
    fx_config_free(cfg);
    return NULL;
}

fx_config *fx_config_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        fx_msg(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    return fx_config_from_stream(f, path, err, errlen);
}

fx_config *fx_config_load_fd(int fd, const char *path, char *err, size_t errlen)
{
    int mine = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    FILE *f = NULL;
    if (mine < 0 || lseek(mine, 0, SEEK_SET) != 0 || (f = fdopen(mine, "r")) == NULL) {
        fx_msg(err, errlen, "%s: cannot read the copy handed down (fd %d): %s", path, fd,
               strerror(errno));
        if (mine >= 0)
            close(mine);
        return NULL;
    }
    return fx_config_from_stream(f, path, err, errlen);
}

fx_config *fx_config_parse(const char *name, const char *text, size_t len, char *err,
                           size_t errlen)
{
    static const char empty[1];
    /* fmemopen refuses a zero-sized buffer on older C libraries. */
    FILE *f = len ? fmemopen((void *)text, len, "r") : fmemopen((void *)empty, 1, "r");

    if (f == NULL) {
        fx_msg(err, errlen, "%s: %s", name, strerror(errno));
        return NULL;
    }
    if (!len)
        fgetc(f);
    return fx_config_from_stream(f, name, err, errlen);
}
