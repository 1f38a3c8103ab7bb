/*
 * stats.c — the host's counters as text, and the control thread that
 * serves them (fxctl.h): per rule (connections, live, denials, refused,
 * bytes from and to clients), per filter (sessions, denials, faults,
 * disabled), and host-wide live objects (connections, sessions, host
 * buffers). Counters are LONG/LONG64 updated with Interlocked* where they
 * happen (connection.c, session.c, guard.c); this file only reads them.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fxctl.h"
#include "fxinherit.h"
#include "guard.h"
#include "hostobj.h"
#include "stats.h"

static fx_ctl *ctl;
static HANDLE ctl_thread;
static time_t started;

static LONG64 read64(LONG64 *p)
{
    return InterlockedCompareExchange64(p, 0, 0);
}

static LONG read32(LONG *p)
{
    return InterlockedCompareExchange(p, 0, 0);
}

/* Prometheus label value: backslash, double quote and newline escaped. */
static void put_label(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP fwxshim_%s %s\n# TYPE fwxshim_%s %s\n", name, help, name, type);
}

enum rule_field { R_CONNS, R_LIVE, R_DENIALS, R_REFUSED, R_BYTES_IN, R_BYTES_OUT };
enum filter_field { F_SESSIONS, F_DENIALS, F_FAULTS, F_DISABLED, F_LIVE_BUFFERS, F_LIVE_SOCKETS,
                    F_LIVE_SESSIONS, F_RECLAIMED };

static long long rule_value(struct rule *r, enum rule_field k)
{
    switch (k) {
    case R_CONNS: return read32(&r->connections);
    case R_LIVE: return read32(&r->live);
    case R_DENIALS: return read32(&r->denials);
    case R_REFUSED: return read32(&r->refused);
    case R_BYTES_IN: return read64(&r->bytes_in);
    case R_BYTES_OUT: return read64(&r->bytes_out);
    }
    return 0;
}

static long long filter_value(struct fx_filter *f, enum filter_field k)
{
    switch (k) {
    case F_SESSIONS: return read32(&f->sessions);
    case F_DENIALS: return read32(&f->denials);
    case F_FAULTS: return read32(&f->faults);
    case F_DISABLED: return read32((LONG *)&f->disabled) ? 1 : 0;
    case F_LIVE_BUFFERS: return read32(&f->live_buffers);
    case F_LIVE_SOCKETS: return read32(&f->live_sockets);
    case F_LIVE_SESSIONS: return read32(&f->live_sessions);
    case F_RECLAIMED: return read32(&f->reclaimed_buffers);
    }
    return 0;
}

enum worker_field { W_LIVE, W_SLEEPS, W_CATCHES };

static uint64_t worker_value(struct worker *w, enum worker_field k)
{
    uint64_t sleeps = 0, catches = 0;
    if (k == W_LIVE)
        return (uint64_t)read32(&w->connections);
    if (w->loop)
        fx_loop_counters(w->loop, &sleeps, &catches);
    return k == W_CATCHES ? catches : sleeps;
}

static void prometheus(FILE *f, struct host *h)
{
    static const struct { const char *name, *type, *help; enum rule_field k; } rm[] = {
        { "connections_total", "counter", "Connections accepted by the rule, denied and refused ones included.", R_CONNS },
        { "connections_live", "gauge", "Connections of the rule not yet closed.", R_LIVE },
        { "denials_total", "counter", "Connections of the rule a filter denied.", R_DENIALS },
        { "refused_total", "counter", "Connections of the rule refused for another reason (a filter failed or faulted, not redirected).", R_REFUSED },
        { "bytes_from_clients_total", "counter", "Bytes received from clients, counted when a connection closes.", R_BYTES_IN },
        { "bytes_to_clients_total", "counter", "Bytes sent to clients, counted when a connection closes.", R_BYTES_OUT },
    };
    static const struct { const char *name, *type, *help; enum filter_field k; } fm[] = {
        { "filter_sessions_total", "counter", "Sessions the filter attached to (AttachToSession).", F_SESSIONS },
        { "filter_denials_total", "counter", "Connections and binds the filter denied.", F_DENIALS },
        { "filter_faults_total", "counter", "Exceptions caught in the filter's code.", F_FAULTS },
        { "filter_disabled", "gauge", "1 once the filter is disabled after too many faults.", F_DISABLED },
        { "filter_buffers_live", "gauge", "Host I/O buffers the filter holds (made by its calls or for its Recv); only growing means a leak.", F_LIVE_BUFFERS },
        { "filter_network_sockets_live", "gauge", "Network sockets (IFWXNetworkSocket) the filter created and still holds.", F_LIVE_SOCKETS },
        { "filter_sessions_live", "gauge", "Sessions the filter is attached to now.", F_LIVE_SESSIONS },
        { "filter_buffers_reclaimed_total", "counter", "Host I/O buffers the filter still held when their connection ended, whose memory the host took back.", F_RECLAIMED },
    };

    for (size_t m = 0; m < ARRAYSIZE(rm); m++) {
        head(f, rm[m].name, rm[m].type, rm[m].help);
        for (int r = 0; r < h->nrules; r++) {
            fprintf(f, "fwxshim_%s{rule=\"", rm[m].name);
            put_label(f, h->rules[r].conf->name);
            fprintf(f, "\"} %lld\n", rule_value(&h->rules[r], rm[m].k));
        }
    }
    for (size_t m = 0; m < ARRAYSIZE(fm); m++) {
        head(f, fm[m].name, fm[m].type, fm[m].help);
        for (int i = 0; i < h->nfilters; i++) {
            fprintf(f, "fwxshim_%s{filter=\"", fm[m].name);
            put_label(f, fx_filter_name(&h->filters[i]));
            fprintf(f, "\"} %lld\n", filter_value(&h->filters[i], fm[m].k));
        }
    }
    head(f, "host_connections_live", "gauge", "Live connections over all rules.");
    fprintf(f, "fwxshim_host_connections_live %ld\n", (long)read32(&h->live_connections));
    head(f, "host_connections_total", "counter", "Connections accepted over all rules.");
    fprintf(f, "fwxshim_host_connections_total %ld\n", (long)read32(&h->total_connections));
    head(f, "host_denials_total", "counter", "Connections denied by filters over all rules.");
    fprintf(f, "fwxshim_host_denials_total %ld\n", (long)read32(&h->denied_connections));
    head(f, "sessions_live", "gauge", "Live sessions (published servers' and clients').");
    fprintf(f, "fwxshim_sessions_live %ld\n", (long)read32(&h->live_sessions));
    head(f, "host_buffers_live", "gauge", "Live host I/O buffers (IFWXIOBuffer objects of the host).");
    fprintf(f, "fwxshim_host_buffers_live %ld\n", (long)iobuffer_live_count());
    LONG held_bytes, held = iobuffer_reclaimed_held(&held_bytes);
    head(f, "host_buffers_reclaimed_total", "counter", "Host I/O buffers reclaimed from filters when their connection ended.");
    fprintf(f, "fwxshim_host_buffers_reclaimed_total %ld\n", (long)iobuffer_reclaimed_count());
    head(f, "host_reclaimed_headers_bytes", "gauge", "Memory still held by reclaimed buffers that filters never released (their headers).");
    fprintf(f, "fwxshim_host_reclaimed_headers_bytes %ld\n", (long)held_bytes);
    (void)held;
    head(f, "faults_total", "counter", "Exceptions caught in filter code, over all filters.");
    fprintf(f, "fwxshim_faults_total %ld\n", (long)guard_fault_total());
    head(f, "workers", "gauge", "Worker threads.");
    fprintf(f, "fwxshim_workers %d\n", h->nworkers);
    static const struct { const char *name, *type, *help; enum worker_field k; } wm[] = {
        { "worker_connections_live", "gauge", "Live connections on the worker.", W_LIVE },
        { "worker_sleeps_total", "counter", "Times the worker blocked waiting for events.", W_SLEEPS },
        { "worker_spin_catches_total", "counter",
          "Times the worker's poll before sleeping (poll-spin) found an event, saving a sleep.", W_CATCHES },
    };
    for (size_t m = 0; m < ARRAYSIZE(wm); m++) {
        head(f, wm[m].name, wm[m].type, wm[m].help);
        for (int w = 0; w < h->nworkers; w++)
            fprintf(f, "fwxshim_%s{worker=\"%d\"} %llu\n", wm[m].name, w,
                    (unsigned long long)worker_value(&h->workers[w], wm[m].k));
    }
    head(f, "start_time_seconds", "gauge", "When the host started, in seconds since the epoch.");
    fprintf(f, "fwxshim_start_time_seconds %lld\n", (long long)started);
}

static void table(FILE *f, struct host *h)
{
    LONG held_bytes, held = iobuffer_reclaimed_held(&held_bytes);
    fprintf(f, "fwxhost %s (%s-bit host), up %lld s, %d worker(s)\n", FWX_VERSION,
            sizeof(void *) == 8 ? "64" : "32", (long long)(time(NULL) - started), h->nworkers);
    fprintf(f, "host: connections %ld total, %ld live, %ld denied; sessions %ld live; "
            "host buffers %ld live; faults %ld; reclaimed buffers %ld (%ld headers held, %ld bytes)\n",
            (long)read32(&h->total_connections), (long)read32(&h->live_connections),
            (long)read32(&h->denied_connections), (long)read32(&h->live_sessions),
            (long)iobuffer_live_count(), (long)guard_fault_total(),
            (long)iobuffer_reclaimed_count(), (long)held, (long)held_bytes);
    static const struct { const char *label; enum worker_field k; } wl[] = {
        { "workers: live", W_LIVE }, { "; sleeps", W_SLEEPS }, { "; spin catches", W_CATCHES },
    };
    for (size_t m = 0; m < ARRAYSIZE(wl); m++) {
        fputs(wl[m].label, f);
        for (int w = 0; w < h->nworkers; w++)
            fprintf(f, "%s%llu", w ? " / " : " ",
                    (unsigned long long)worker_value(&h->workers[w], wl[m].k));
    }
    fprintf(f, "\n");
    fprintf(f, "\n%-20s %-8s %11s %6s %8s %8s %18s %16s\n", "rule", "type", "connections", "live",
            "denials", "refused", "bytes-from-clients", "bytes-to-clients");
    for (int r = 0; r < h->nrules; r++) {
        struct rule *ru = &h->rules[r];
        fprintf(f, "%-20s %-8s %11lld %6lld %8lld %8lld %18lld %16lld\n", ru->conf->name,
                ru->conf->type == FX_RULE_OUTBOUND ? "outbound" : "publish",
                rule_value(ru, R_CONNS), rule_value(ru, R_LIVE), rule_value(ru, R_DENIALS),
                rule_value(ru, R_REFUSED), rule_value(ru, R_BYTES_IN), rule_value(ru, R_BYTES_OUT));
    }
    /* Columns after "state": what the filter holds now (live host
     * objects); appended so the older columns keep their places. */
    fprintf(f, "\n%-20s %8s %8s %7s  %-8s %12s %12s %13s %9s\n", "filter", "sessions", "denials",
            "faults", "state", "live-buffers", "live-sockets", "live-sessions", "reclaimed");
    for (int i = 0; i < h->nfilters; i++) {
        struct fx_filter *fl = &h->filters[i];
        fprintf(f, "%-20s %8lld %8lld %7lld  %-8s %12lld %12lld %13lld %9lld\n", fx_filter_name(fl),
                filter_value(fl, F_SESSIONS), filter_value(fl, F_DENIALS),
                filter_value(fl, F_FAULTS), filter_value(fl, F_DISABLED) ? "disabled" : "enabled",
                filter_value(fl, F_LIVE_BUFFERS), filter_value(fl, F_LIVE_SOCKETS),
                filter_value(fl, F_LIVE_SESSIONS), filter_value(fl, F_RECLAIMED));
    }
    if (!h->nfilters)
        fprintf(f, "(no filters)\n");
}

char *stats_render(struct host *h, int prom)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    if (prom)
        prometheus(f, h);
    else
        table(f, h);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static char *render_cb(enum fx_ctl_kind kind, void *arg)
{
    return stats_render(arg, kind == FX_CTL_METRICS);
}

static DWORD WINAPI ctl_main(void *arg)
{
    fx_ctl_run(arg);
    return 0;
}

int stats_server_start(struct host *h, const char *control_path, char *err, size_t errlen)
{
    char path[256], why[512];
    const char *p = control_path ? control_path : h->config->host.control;
    int is_default = !p;
    fx_host_conf *hc = &h->config->host;

    started = time(NULL);
    if (is_default) {
        fx_ctl_default_path(path, sizeof(path));
        p = path;
    }
    if (fx_inherited()) {
        /* Under the supervisor, which bound both (or, for the default
         * path, may have found it taken: then there is none). */
        int ufd = fx_inherited_fd("@control"), hfd = fx_inherited_fd("@metrics");
        if (hc->has_metrics && hfd < 0) {
            snprintf(err, errlen, "metrics: the supervisor handed down no socket");
            return -1;
        }
        if (ufd < 0) {
            if (hfd >= 0)
                close(hfd);
            const char *why_not = getenv("FWX_NO_CONTROL");
            fx_log(FX_LOG_NOTICE, "no control socket (%s); fwxhost --stats needs [host] control "
                   "for this host", why_not ? why_not : "the supervisor handed down none");
            return 0;
        }
        ctl = fx_ctl_new_fds(p, is_default, ufd, NULL, 0, hfd, render_cb, h, why, sizeof(why));
    } else {
        ctl = fx_ctl_new(p, is_default, hc->has_metrics ? &hc->metrics : NULL, hc->metrics_len,
                         render_cb, h, why, sizeof(why));
    }
    if (!ctl && is_default && !hc->has_metrics) {
        /* The default is best effort: another host may hold it. */
        fx_log(FX_LOG_NOTICE, "no control socket (%s); fwxhost --stats needs [host] control "
               "for this host", why);
        return 0;
    }
    if (!ctl) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    fx_log(FX_LOG_INFO, "control socket %s", p);
    if (hc->has_metrics)
        fx_log(FX_LOG_NOTICE, "metrics on http://%s/metrics", fx_ctl_metrics_addr(ctl));
    ctl_thread = CreateThread(NULL, 0, ctl_main, ctl, 0, NULL);
    if (!ctl_thread) {
        snprintf(err, errlen, "CreateThread failed for the control server (error %lu)",
                 (unsigned long)GetLastError());
        fx_ctl_free(ctl);
        ctl = NULL;
        return -1;
    }
    return 0;
}

void stats_server_stop(void)
{
    if (!ctl)
        return;
    fx_ctl_stop(ctl);
    if (ctl_thread) {
        WaitForSingleObject(ctl_thread, INFINITE);
        CloseHandle(ctl_thread);
        ctl_thread = NULL;
    }
    fx_ctl_free(ctl);
    ctl = NULL;
}
