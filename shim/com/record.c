/*
 * record.c — the recording tap of `fwxhost --record DIR` ([host] record):
 * connects a connection's outer sockets to its fx_rec (shim/core/fxrecord.c).
 *
 * Owns c->rec: made when the connection's events are done (the addresses
 * and the rule are known then, and a denied connection is recorded too),
 * fed by the two outer sockets (socket.c's net ends, or the relay's tap
 * when there is no data filter), written and freed at teardown. All of it
 * runs on the connection's loop thread.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostobj.h"

void record_start(struct connection *c)
{
    fx_config *cfg = the_host ? the_host->config : NULL;
    char specs[HOST_MAX_FILTERS][4200];
    const char *list[HOST_MAX_FILTERS];
    fx_rec_info in;
    int n = 0;

    if (!cfg || !cfg->host.record || c->rec || !c->rule)
        return;
    for (int i = 0; i < the_host->nfilters && n < HOST_MAX_FILTERS; i++) {
        struct fx_filter *f = &the_host->filters[i];
        char clsid[40] = "";
        if (f->has_clsid) {
            fx_guid g;
            memcpy(&g, &f->clsid, sizeof(g));
            clsid[0] = '=';
            fx_guid_format(&g, clsid + 1, sizeof(clsid) - 1);
        }
        snprintf(specs[n], sizeof(specs[n]), "%s%s", f->path, clsid);
        list[n] = specs[n];
        n++;
    }
    memset(&in, 0, sizeof(in));
    in.dir = cfg->host.record;
    in.rule = c->rule->conf->name;
    in.type = c->rule->conf->type;
    in.listen = c->local_addr;
    in.listen_len = c->local_len;
    in.target = c->target_addr;
    in.target_len = c->target_len;
    in.client = c->client_addr;
    in.client_len = c->client_len;
    in.filters = list;
    in.nfilters = (size_t)n;
    in.id = c->id;
    in.max_bytes = cfg->host.record_max;
    if (!(c->rec = fx_rec_new(&in)))
        fx_log(FX_LOG_WARN, "conn %lu: out of memory: this connection is not recorded", c->id);
}

void record_io(struct connection *c, int side, const void *data, long n)
{
    if (!c->rec)
        return;
    if (n > 0) {
        BOOL was = fx_rec_truncated(c->rec);
        fx_rec_data(c->rec, side, data, (size_t)n);
        if (!was && fx_rec_truncated(c->rec))
            fx_log(FX_LOG_WARN, "conn %lu: recording truncated: the script reached [host] "
                   "record-max-bytes (%zu bytes); the rest of this connection is not recorded",
                   c->id, the_host->config->host.record_max);
    } else {
        fx_rec_end(c->rec, side, n < 0);
    }
}

void record_relay_tap(void *arg, int side, const void *data, long n)
{
    record_io(arg, side, data, n);
}

void record_finish(struct connection *c)
{
    char path[4200], err[512];
    if (!c->rec)
        return;
    if (fx_rec_write(c->rec, path, sizeof(path), err, sizeof(err)) == 0)
        fx_log(FX_LOG_INFO, "conn %lu: recorded %zu bytes%s to %s", c->id,
               fx_rec_payload(c->rec), fx_rec_truncated(c->rec) ? " (truncated)" : "", path);
    else
        fx_log(FX_LOG_WARN, "conn %lu: recording not written: %s", c->id, err);
    fx_rec_free(c->rec);
    c->rec = NULL;
}
