/*
 * fxscript.c - fwxreplay scripts (see fxscript.h, docs/replay-format.md).
 *
 * Owns the script parser, the byte escapes shared with golden files and
 * the line diff.  The parser reads line by line from one bounded buffer;
 * every error names FILE:LINE:COL and the first error wins.
 */
#define _GNU_SOURCE
#include "fxscript.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------ text */

void fx_text_add(fx_text *t, const char *s, size_t n)
{
    if (t->oom)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
}

void fx_text_printf(fx_text *t, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        fx_text_add(t, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        t->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    fx_text_add(t, big, (size_t)n);
    free(big);
}

void fx_text_free(fx_text *t)
{
    free(t->p);
    memset(t, 0, sizeof(*t));
}

void fx_escape(fx_text *t, const unsigned char *d, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = d[i];
        char esc[5];
        switch (c) {
        case '\n': fx_text_add(t, "\\n", 2); break;
        case '\r': fx_text_add(t, "\\r", 2); break;
        case '\t': fx_text_add(t, "\\t", 2); break;
        case '\\': fx_text_add(t, "\\\\", 2); break;
        case '"':  fx_text_add(t, "\\\"", 2); break;
        default:
            if (c >= 0x20 && c < 0x7f) {
                fx_text_add(t, (const char *)&c, 1);
            } else {
                snprintf(esc, sizeof(esc), "\\x%02X", c);
                fx_text_add(t, esc, 4);
            }
        }
    }
}

/* ------------------------------------------------------------ parser */

struct parse {
    const char *name;
    const char *dir;
    char *err;
    size_t errlen;
    int failed;
    int line;
    const char *bol;              /* start of the current line */
    fx_script *s;
    int have_action;
    int have_listen, have_target, have_client, have_rule;
};

static void perr(struct parse *p, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void perr(struct parse *p, const char *at, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    if (p->failed)
        return;
    p->failed = 1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (p->err && p->errlen)
        snprintf(p->err, p->errlen, "%s:%d:%d: %s", p->name, p->line,
                 at ? (int)(at - p->bol) + 1 : 1, msg);
}

static const char *skip_ws(const char *c, const char *end)
{
    while (c < end && (*c == ' ' || *c == '\t'))
        c++;
    return c;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One or more "..." strings after a send action, up to the end of the
 * line or a '#' comment.  Appends to out. */
static int parse_strings(struct parse *p, const char *c, const char *end, fx_text *out)
{
    int nstr = 0;
    for (;;) {
        c = skip_ws(c, end);
        if (c >= end || *c == '#')
            break;
        if (*c != '"') {
            perr(p, c, nstr ? "expected another \"string\", a # comment or the end of the line"
                            : "expected a \"string\" (C-like escapes: \\n \\r \\t \\\\ \\\" \\xHH)");
            return -1;
        }
        const char *open = c++;
        for (;;) {
            if (c >= end) {
                perr(p, open, "unterminated string: no closing '\"' on this line");
                return -1;
            }
            unsigned char ch = (unsigned char)*c;
            if (ch == '"') {
                c++;
                break;
            }
            if (ch == '\\') {
                if (c + 1 >= end) {
                    perr(p, c, "'\\' at the end of the line");
                    return -1;
                }
                char e = c[1], v;
                switch (e) {
                case 'n': v = '\n'; c += 2; break;
                case 'r': v = '\r'; c += 2; break;
                case 't': v = '\t'; c += 2; break;
                case '0': v = 0; c += 2; break;
                case '\\': v = '\\'; c += 2; break;
                case '"': v = '"'; c += 2; break;
                case 'x': {
                    int h = c + 2 < end ? hexval((unsigned char)c[2]) : -1;
                    int l = c + 3 < end ? hexval((unsigned char)c[3]) : -1;
                    if (h < 0 || l < 0) {
                        perr(p, c, "\\x needs exactly two hex digits");
                        return -1;
                    }
                    v = (char)(h * 16 + l);
                    c += 4;
                    break;
                }
                default:
                    perr(p, c, "unknown escape '\\%c' (use \\n \\r \\t \\0 \\\\ \\\" or \\xHH)",
                         e >= 0x20 && e < 0x7f ? e : '?');
                    return -1;
                }
                fx_text_add(out, &v, 1);
                continue;
            }
            if (ch < 0x20 && ch != '\t') {
                perr(p, c, "control byte 0x%02X in a string; write it as \\x%02X", ch, ch);
                return -1;
            }
            fx_text_add(out, (const char *)c, 1);
            c++;
        }
        nstr++;
    }
    if (!nstr) {
        perr(p, c, "expected a \"string\" after ':'");
        return -1;
    }
    if (out->oom) {
        perr(p, NULL, "out of memory");
        return -1;
    }
    return 0;
}

/* The single word argument of a header key or pause, and nothing after
 * it but a comment. */
static int one_word(struct parse *p, const char *c, const char *end, const char *key,
                    char *buf, size_t buflen)
{
    c = skip_ws(c, end);
    const char *w = c;
    while (c < end && *c != ' ' && *c != '\t' && *c != '#')
        c++;
    if (c == w) {
        perr(p, w, "'%s' needs a value", key);
        return -1;
    }
    if ((size_t)(c - w) >= buflen) {
        perr(p, w, "value of '%s' is too long (at most %zu bytes)", key, buflen - 1);
        return -1;
    }
    memcpy(buf, w, (size_t)(c - w));
    buf[c - w] = 0;
    c = skip_ws(c, end);
    if (c < end && *c != '#') {
        perr(p, c, "unexpected text after the value of '%s'", key);
        return -1;
    }
    return 0;
}

static int add_step(struct parse *p, const char *at, enum fx_step_op op, fx_text *data,
                    unsigned ms)
{
    fx_script *s = p->s;
    if (s->nsteps >= FX_SCRIPT_MAX_STEPS) {
        perr(p, at, "too many actions (at most %d)", FX_SCRIPT_MAX_STEPS);
        return -1;
    }
    if ((s->nsteps & (s->nsteps - 1)) == 0) {   /* 0, 1, 2, 4, ...: grow */
        size_t cap = s->nsteps ? s->nsteps * 2 : 8;
        fx_script_step *n = realloc(s->steps, cap * sizeof(*n));
        if (!n) {
            perr(p, at, "out of memory");
            return -1;
        }
        s->steps = n;
    }
    fx_script_step *st = &s->steps[s->nsteps++];
    memset(st, 0, sizeof(*st));
    st->op = op;
    st->line = p->line;
    st->ms = ms;
    if (data) {
        st->len = data->len;
        st->data = data->p ? (unsigned char *)data->p : malloc(1);
        data->p = NULL;
        data->len = data->cap = 0;
        if (!st->data) {
            perr(p, at, "out of memory");
            return -1;
        }
    }
    p->have_action = 1;
    return 0;
}

static int header_addr(struct parse *p, const char *c, const char *end, const char *key,
                       fx_sockaddr *sa, int *salen, int *have)
{
    char word[128], why[256];
    const char *at = skip_ws(c, end);
    if (*have) {
        perr(p, at, "'%s' given twice", key);
        return -1;
    }
    if (one_word(p, c, end, key, word, sizeof(word)) != 0)
        return -1;
    *salen = sizeof(*sa);
    if (fx_addr_parse(word, sa, salen, why, sizeof(why)) != 0) {
        perr(p, at, "%s: %s", key, why);
        return -1;
    }
    *have = 1;
    return 0;
}

static int header_filter(struct parse *p, const char *c, const char *end)
{
    fx_script *s = p->s;
    char word[4096];
    const char *at = skip_ws(c, end);
    if (one_word(p, c, end, "filter", word, sizeof(word)) != 0)
        return -1;
    if (s->nfilters >= FX_SCRIPT_MAX_FILTERS) {
        perr(p, at, "too many filters (at most %d)", FX_SCRIPT_MAX_FILTERS);
        return -1;
    }
    if (!s->filters && !(s->filters = calloc(FX_SCRIPT_MAX_FILTERS, sizeof(*s->filters)))) {
        perr(p, at, "out of memory");
        return -1;
    }
    fx_script_filter *f = &s->filters[s->nfilters];
    /* ${NAME}: from the environment, so one script serves every build. */
    char expanded[4096];
    size_t o = 0;
    for (const char *w = word; *w;) {
        if (w[0] == '$' && w[1] == '{') {
            const char *close = strchr(w, '}');
            char var[128];
            if (!close || close - w - 2 <= 0 || close - w - 2 >= (long)sizeof(var)) {
                perr(p, at + (w - word), "'${' without a NAME and '}'");
                return -1;
            }
            memcpy(var, w + 2, (size_t)(close - w - 2));
            var[close - w - 2] = 0;
            const char *val = getenv(var);
            if (!val) {
                perr(p, at + (w - word), "${%s} is not set in the environment", var);
                return -1;
            }
            size_t vl = strlen(val);
            if (o + vl >= sizeof(expanded)) {
                perr(p, at, "filter path too long");
                return -1;
            }
            memcpy(expanded + o, val, vl);
            o += vl;
            w = close + 1;
        } else {
            if (o + 1 >= sizeof(expanded)) {
                perr(p, at, "filter path too long");
                return -1;
            }
            expanded[o++] = *w++;
        }
    }
    expanded[o] = 0;
    memcpy(word, expanded, o + 1);
    char *eq = strchr(word, '=');
    if (eq) {
        *eq++ = 0;
        fx_guid g;
        if (fx_guid_parse(eq, &g) != 0) {
            perr(p, at + (eq - word), "'%s' is not a CLSID ({XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX})", eq);
            return -1;
        }
        f->clsid = strdup(eq);
    }
    if (!word[0]) {
        perr(p, at, "filter needs a DLL path");
        return -1;
    }
    if (word[0] != '/' && p->dir && p->dir[0]) {
        if (asprintf(&f->path, "%s/%s", p->dir, word) < 0)
            f->path = NULL;
    } else {
        f->path = strdup(word);
    }
    if (!f->path || (eq && !f->clsid)) {
        perr(p, at, "out of memory");
        return -1;
    }
    f->line = p->line;
    s->nfilters++;
    return 0;
}

static void parse_line(struct parse *p, const char *c, const char *end)
{
    fx_script *s = p->s;
    const char *kw;
    size_t kwlen;
    char word[64];

    c = skip_ws(c, end);
    if (end > c && end[-1] == '\r')
        end--;                       /* CRLF files */
    if (c >= end || *c == '#')
        return;
    kw = c;
    while (c < end && (*c == '-' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                       (*c >= '0' && *c <= '9')))
        c++;
    kwlen = (size_t)(c - kw);
#define KW(text) (kwlen == sizeof(text) - 1 && !memcmp(kw, text, kwlen))
    if (!kwlen) {
        perr(p, kw, "expected an action or a header key, not '%c'",
             (unsigned char)*kw >= 0x20 && (unsigned char)*kw < 0x7f ? *kw : '?');
        return;
    }
    int colon = c < end && *c == ':';
    /* ---- actions */
    if (KW("client") || KW("server") || KW("client-datagram") || KW("server-datagram")) {
        int dgram = KW("client-datagram") || KW("server-datagram");
        fx_sockaddr from, to;
        int from_len = 0, to_len = 0;
        if (!colon) {
            perr(p, c, "expected ':' after '%.*s'", (int)kwlen, kw);
            return;
        }
        if (dgram && s->protocol != FX_PROTO_UDP) {
            perr(p, kw, "'%.*s' needs 'protocol udp' in the header", (int)kwlen, kw);
            return;
        }
        if (!dgram && s->protocol == FX_PROTO_UDP) {
            perr(p, kw, "'%.*s:' in a UDP script (protocol udp): use %.*s-datagram:",
                 (int)kwlen, kw, (int)kwlen, kw);
            return;
        }
        c++;
        /* Datagrams: optional "from ADDR:PORT" and "to ADDR:PORT" before the bytes. */
        while (dgram) {
            const char *w = skip_ws(c, end), *we = w;
            while (we < end && *we != ' ' && *we != '\t')
                we++;
            int is_from = we - w == 4 && !memcmp(w, "from", 4);
            int is_to = we - w == 2 && !memcmp(w, "to", 2);
            if (!is_from && !is_to)
                break;
            if ((is_from && from_len) || (is_to && to_len)) {
                perr(p, w, "'%s' given twice", is_from ? "from" : "to");
                return;
            }
            const char *a = skip_ws(we, end), *ae = a;
            char addr[128], why[256];
            while (ae < end && *ae != ' ' && *ae != '\t')
                ae++;
            if (ae == a || (size_t)(ae - a) >= sizeof(addr)) {
                perr(p, a, "'%s' needs an ADDR:PORT", is_from ? "from" : "to");
                return;
            }
            memcpy(addr, a, (size_t)(ae - a));
            addr[ae - a] = 0;
            int *len = is_from ? &from_len : &to_len;
            *len = sizeof(fx_sockaddr);
            if (fx_addr_parse(addr, is_from ? &from : &to, len, why, sizeof(why)) != 0) {
                perr(p, a, "%s: %s", is_from ? "from" : "to", why);
                return;
            }
            c = ae;
        }
        fx_text data = { 0 };
        if (parse_strings(p, c, end, &data) != 0) {
            fx_text_free(&data);
            return;
        }
        enum fx_step_op op = KW("client") ? FX_STEP_CLIENT_SEND : KW("server") ? FX_STEP_SERVER_SEND
                             : KW("client-datagram") ? FX_STEP_CLIENT_DGRAM : FX_STEP_SERVER_DGRAM;
        if (dgram && data.len > 65507) {
            fx_text_free(&data);
            perr(p, kw, "a datagram holds at most 65507 bytes, not %zu", data.len);
            return;
        }
        if (add_step(p, kw, op, &data, 0) == 0 && dgram) {
            fx_script_step *st = &s->steps[s->nsteps - 1];
            if ((st->from_len = from_len))
                st->from = from;
            if ((st->to_len = to_len))
                st->to = to;
        }
        fx_text_free(&data);
        return;
    }
    if (colon) {
        perr(p, c, "unexpected ':' after '%.*s' (only client: and server: take data)",
             (int)kwlen, kw);
        return;
    }
    static const struct { const char *name; enum fx_step_op op; } simple[] = {
        { "client-shutdown", FX_STEP_CLIENT_SHUTDOWN }, { "server-shutdown", FX_STEP_SERVER_SHUTDOWN },
        { "client-abort", FX_STEP_CLIENT_ABORT },       { "server-abort", FX_STEP_SERVER_ABORT },
        { "expect-closed", FX_STEP_EXPECT_CLOSED },
    };
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
        if (kwlen == strlen(simple[i].name) && !memcmp(kw, simple[i].name, kwlen)) {
            const char *rest = skip_ws(c, end);
            if (rest < end && *rest != '#') {
                perr(p, rest, "'%s' takes no argument", simple[i].name);
                return;
            }
            if (s->protocol == FX_PROTO_UDP && simple[i].op != FX_STEP_EXPECT_CLOSED) {
                perr(p, kw, "'%s' in a UDP script (protocol udp): datagrams have no connection "
                     "to shut down or reset", simple[i].name);
                return;
            }
            add_step(p, kw, simple[i].op, NULL, 0);
            return;
        }
    if (KW("pause")) {
        const char *at = skip_ws(c, end);
        if (one_word(p, c, end, "pause", word, sizeof(word)) != 0)
            return;
        unsigned long v = 0;
        for (const char *d = word; *d; d++) {
            if (*d < '0' || *d > '9' || v > FX_SCRIPT_MAX_PAUSE) {
                perr(p, at, "pause takes milliseconds, 0 to %d", FX_SCRIPT_MAX_PAUSE);
                return;
            }
            v = v * 10 + (unsigned)(*d - '0');
        }
        if (v > FX_SCRIPT_MAX_PAUSE) {
            perr(p, at, "pause takes milliseconds, 0 to %d", FX_SCRIPT_MAX_PAUSE);
            return;
        }
        add_step(p, kw, FX_STEP_PAUSE, NULL, (unsigned)v);
        return;
    }
    /* ---- header */
    int header = KW("rule") || KW("listen") || KW("target") || KW("client-address") ||
                 KW("filter") || KW("protocol");
    if (!header) {
        perr(p, kw, "unknown action or header key '%.*s' (actions: client:, server:, "
             "client-shutdown, server-shutdown, client-abort, server-abort, pause, expect-closed, "
             "client-datagram:, server-datagram:)",
             (int)(kwlen > 40 ? 40 : kwlen), kw);
        return;
    }
    if (p->have_action) {
        perr(p, kw, "header key '%.*s' after the first action; the header comes first",
             (int)kwlen, kw);
        return;
    }
    if (KW("rule")) {
        const char *at = skip_ws(c, end);
        if (p->have_rule) {
            perr(p, at, "'rule' given twice");
            return;
        }
        if (one_word(p, c, end, "rule", word, sizeof(word)) != 0)
            return;
        if (!strcmp(word, "publish"))
            s->rule = FX_RULE_PUBLISH;
        else if (!strcmp(word, "outbound"))
            s->rule = FX_RULE_OUTBOUND;
        else
            perr(p, at, "rule is 'publish' or 'outbound', not '%s'", word);
        p->have_rule = 1;
    } else if (KW("protocol")) {
        const char *at = skip_ws(c, end);
        if (one_word(p, c, end, "protocol", word, sizeof(word)) != 0)
            return;
        if (!strcmp(word, "udp"))
            s->protocol = FX_PROTO_UDP;
        else if (!strcmp(word, "tcp"))
            s->protocol = FX_PROTO_TCP;
        else
            perr(p, at, "protocol is 'tcp' or 'udp', not '%s'", word);
    } else if (KW("listen")) {
        header_addr(p, c, end, "listen", &s->listen, &s->listen_len, &p->have_listen);
    } else if (KW("target")) {
        header_addr(p, c, end, "target", &s->target, &s->target_len, &p->have_target);
    } else if (KW("client-address")) {
        header_addr(p, c, end, "client-address", &s->client, &s->client_len, &p->have_client);
    } else {
        header_filter(p, c, end);
    }
#undef KW
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

fx_script *fx_script_parse(const char *name, const char *dir, const char *text, size_t len,
                           char *err, size_t errlen)
{
    struct parse p;
    char why[128];

    memset(&p, 0, sizeof(p));
    p.name = name ? name : "script";
    p.dir = dir;
    p.err = err;
    p.errlen = errlen;
    if (err && errlen)
        err[0] = 0;
    if (len > FX_SCRIPT_MAX_SIZE) {
        snprintf(err, errlen, "%s: the script is larger than %u bytes", p.name, FX_SCRIPT_MAX_SIZE);
        return NULL;
    }
    if (!(p.s = calloc(1, sizeof(*p.s))) || !(p.s->path = strdup(p.name))) {
        snprintf(err, errlen, "%s: out of memory", p.name);
        fx_script_free(p.s);
        return NULL;
    }
    const char *c = text, *end = text + len;
    if (len >= 3 && !memcmp(c, "\xEF\xBB\xBF", 3))
        c += 3;                       /* UTF-8 BOM */
    while (c < end && !p.failed) {
        const char *nl = memchr(c, '\n', (size_t)(end - c));
        const char *eol = nl ? nl : end;
        p.line++;
        p.bol = c;
        if ((size_t)(eol - c) > FX_SCRIPT_MAX_LINE) {
            perr(&p, NULL, "line longer than %u bytes", FX_SCRIPT_MAX_LINE);
            break;
        }
        const char *zero = memchr(c, 0, (size_t)(eol - c));
        if (zero) {
            perr(&p, zero, "NUL byte in the script (a text file is expected)");
            break;
        }
        parse_line(&p, c, eol);
        c = nl ? nl + 1 : end;
    }
    /* Defaults: labels only, nothing is bound or connected. */
    if (!p.failed && !p.have_listen) {
        p.s->listen_len = sizeof(p.s->listen);
        fx_addr_parse("127.0.0.1:8080", &p.s->listen, &p.s->listen_len, why, sizeof(why));
    }
    if (!p.failed && !p.have_target) {
        p.s->target_len = sizeof(p.s->target);
        fx_addr_parse("10.0.0.1:80", &p.s->target, &p.s->target_len, why, sizeof(why));
    }
    if (!p.failed && !p.have_client) {
        p.s->client_len = sizeof(p.s->client);
        fx_addr_parse("192.0.2.10:50000", &p.s->client, &p.s->client_len, why, sizeof(why));
    }
    if (!p.failed && p.s->nsteps == 0) {
        p.line = p.line ? p.line : 1;
        p.bol = NULL;
        perr(&p, NULL, "the script has no actions (client:, server:, ...)");
    }
    if (p.failed) {
        fx_script_free(p.s);
        return NULL;
    }
    return p.s;
}

fx_script *fx_script_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        fclose(f);
        return NULL;
    }
    if ((unsigned long long)st.st_size > FX_SCRIPT_MAX_SIZE) {
        snprintf(err, errlen, "%s: the script is larger than %u bytes", path, FX_SCRIPT_MAX_SIZE);
        fclose(f);
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        fclose(f);
        return NULL;
    }
    /* The size may change under us: read at most the bound. */
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len < cap || len > FX_SCRIPT_MAX_SIZE)
            break;
        char *nb = realloc(buf, cap * 2);
        if (!nb)
            break;
        buf = nb;
        cap *= 2;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        snprintf(err, errlen, "%s: read error", path);
        free(buf);
        return NULL;
    }
    char *dir = dir_of(path);
    fx_script *s = fx_script_parse(path, dir, buf, len, err, errlen);
    free(dir);
    free(buf);
    return s;
}

void fx_script_free(fx_script *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nfilters; i++) {
        free(s->filters[i].path);
        free(s->filters[i].clsid);
    }
    free(s->filters);
    for (size_t i = 0; i < s->nsteps; i++)
        free(s->steps[i].data);
    free(s->steps);
    free(s->path);
    free(s);
}

const char *fx_step_name(enum fx_step_op op)
{
    static const char *const names[] = {
        "client:", "server:", "client-shutdown", "server-shutdown",
        "client-abort", "server-abort", "pause", "expect-closed",
        "client-datagram:", "server-datagram:"
    };
    return (unsigned)op < sizeof(names) / sizeof(names[0]) ? names[op] : "?";
}

/* ------------------------------------------------------------ printing */

static void format_addr(fx_text *t, const char *key, const void *sa, int len, const char *end)
{
    char text[FX_ADDRSTRLEN];
    if (len > 0 && fx_addr_format(sa, len, text, sizeof(text)) >= 0)
        fx_text_printf(t, "%s%s%s", key, text, end);
}

void fx_script_format(const fx_script *s, fx_text *t)
{
    fx_text_printf(t, "rule %s\n", s->rule == FX_RULE_OUTBOUND ? "outbound" : "publish");
    if (s->protocol == FX_PROTO_UDP)
        fx_text_add(t, "protocol udp\n", 13);
    format_addr(t, "listen ", &s->listen, s->listen_len, "\n");
    format_addr(t, "target ", &s->target, s->target_len, "\n");
    format_addr(t, "client-address ", &s->client, s->client_len, "\n");
    for (size_t i = 0; i < s->nfilters; i++)
        fx_text_printf(t, "filter %s%s%s\n", s->filters[i].path, s->filters[i].clsid ? "=" : "",
                       s->filters[i].clsid ? s->filters[i].clsid : "");
    fx_text_add(t, "\n", 1);
    for (size_t i = 0; i < s->nsteps; i++) {
        const fx_script_step *st = &s->steps[i];
        switch (st->op) {
        case FX_STEP_CLIENT_SEND:
        case FX_STEP_SERVER_SEND:
        case FX_STEP_CLIENT_DGRAM:
        case FX_STEP_SERVER_DGRAM:
            fx_text_printf(t, "%s", fx_step_name(st->op));
            format_addr(t, " from ", &st->from, st->from_len, "");
            format_addr(t, " to ", &st->to, st->to_len, "");
            fx_text_add(t, " \"", 2);
            fx_escape(t, st->data, st->len);
            fx_text_add(t, "\"\n", 2);
            break;
        case FX_STEP_PAUSE:
            fx_text_printf(t, "pause %u\n", st->ms);
            break;
        default:
            fx_text_printf(t, "%s\n", fx_step_name(st->op));
        }
    }
}

/* ------------------------------------------------------------ diff */

struct lines {
    const char **at;
    size_t *len;
    size_t n;
};

static int split_lines(const char *t, struct lines *l)
{
    size_t cap = 0;
    l->at = NULL;
    l->len = NULL;
    l->n = 0;
    while (t && *t) {
        const char *nl = strchr(t, '\n');
        size_t n = nl ? (size_t)(nl - t) : strlen(t);
        if (t[0] != '#') {
            if (l->n == cap) {
                cap = cap ? cap * 2 : 64;
                const char **a = realloc(l->at, cap * sizeof(*a));
                size_t *b = a ? realloc(l->len, cap * sizeof(*b)) : NULL;
                if (a)
                    l->at = a;
                if (!a || !b)
                    return -1;
                l->len = b;
            }
            l->at[l->n] = t;
            l->len[l->n++] = n;
        }
        t = nl ? nl + 1 : t + n;
    }
    return 0;
}

static int same_line(const struct lines *a, size_t i, const struct lines *b, size_t j)
{
    return a->len[i] == b->len[j] && !memcmp(a->at[i], b->at[j], a->len[i]);
}

static void put_line(FILE *out, char tag, const struct lines *l, size_t i)
{
    fprintf(out, "%c%.*s\n", tag, (int)l->len[i], l->at[i]);
}

int fx_text_diff(const char *a_name, const char *a, const char *b_name, const char *b, FILE *out)
{
    struct lines la, lb;
    int rc = 0;

    if (split_lines(a, &la) != 0 || split_lines(b, &lb) != 0) {
        if (out)
            fprintf(out, "(out of memory comparing %s and %s)\n", a_name, b_name);
        rc = 1;
        goto done;
    }
    size_t pre = 0, suf = 0;
    while (pre < la.n && pre < lb.n && same_line(&la, pre, &lb, pre))
        pre++;
    while (suf < la.n - pre && suf < lb.n - pre &&
           same_line(&la, la.n - 1 - suf, &lb, lb.n - 1 - suf))
        suf++;
    size_t n = la.n - pre - suf, m = lb.n - pre - suf;
    if (n == 0 && m == 0)
        goto done;
    rc = 1;
    if (!out)
        goto done;
    fprintf(out, "--- %s\n+++ %s\n", a_name, b_name);
    size_t ctx0 = pre > 3 ? pre - 3 : 0, ctx1 = suf > 3 ? 3 : suf;
    fprintf(out, "@@ -%zu,%zu +%zu,%zu @@\n", ctx0 + 1, pre - ctx0 + n + ctx1,
            ctx0 + 1, pre - ctx0 + m + ctx1);
    for (size_t i = ctx0; i < pre; i++)
        put_line(out, ' ', &la, i);
    /* LCS over the differing middle when it is small; else all - then all +. */
    unsigned short *t = NULL;
    if (n && m && n <= 2000 && m <= 2000)
        t = calloc((n + 1) * (m + 1), sizeof(*t));
    if (t) {
#define T(i, j) t[(i) * (m + 1) + (j)]
        for (size_t i = n; i-- > 0;)
            for (size_t j = m; j-- > 0;)
                T(i, j) = same_line(&la, pre + i, &lb, pre + j) ? T(i + 1, j + 1) + 1
                          : T(i + 1, j) > T(i, j + 1) ? T(i + 1, j) : T(i, j + 1);
        size_t i = 0, j = 0;
        while (i < n || j < m) {
            if (i < n && j < m && same_line(&la, pre + i, &lb, pre + j)) {
                put_line(out, ' ', &la, pre + i);
                i++, j++;
            } else if (i < n && (j == m || T(i + 1, j) >= T(i, j + 1))) {
                put_line(out, '-', &la, pre + i++);
            } else {
                put_line(out, '+', &lb, pre + j++);
            }
        }
#undef T
        free(t);
    } else {
        for (size_t i = 0; i < n; i++)
            put_line(out, '-', &la, pre + i);
        for (size_t j = 0; j < m; j++)
            put_line(out, '+', &lb, pre + j);
    }
    for (size_t i = 0; i < ctx1; i++)
        put_line(out, ' ', &la, la.n - suf + i);
done:
    free(la.at);
    free(la.len);
    free(lb.at);
    free(lb.len);
    return rc;
}
