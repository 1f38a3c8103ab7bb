/*
 * abi.c — the run-time table of FWX values and the [abi] overrides (see abi.h,
 * docs ABI-301): each overridable name, where its value lives, its IDL default, and
 * the checks that an override set still tells the values apart.
 */
#define FX_ABI_DEFAULTS   /* abi.h: keep the IDL's constants visible here */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "fxconf.h"

/* The numbers, initialised with the IDL's values. */
#define FX_ABI_GUID(n)
#define FX_ABI_NUM(n) DWORD fx_abi_##n = (DWORD)(n);
#define FX_ABI_INT(n) INT fx_abi_##n = (INT)(n);
#include "fxabi_names.h"
#undef FX_ABI_GUID
#undef FX_ABI_NUM
#undef FX_ABI_INT

struct abi_entry {
    const char *name;
    GUID *guid;          /* the writable variable (gen/fxabi_guids.c), or NULL */
    DWORD *num;
    const char *group;   /* values in one group must differ */
    const fx_abi_value *from;   /* the override that set it, if any */
};

/* The GUIDs are declared const by wspfwext.h but defined writable. */
static struct abi_entry entries[] = {
#define FX_ABI_GUID(n) { #n, (GUID *)&n, NULL, "GUID", NULL },
#define FX_ABI_NUM(n) { #n, NULL, &fx_abi_##n, NULL, NULL },
#define FX_ABI_INT(n) { #n, NULL, (DWORD *)&fx_abi_##n, NULL, NULL },
#include "fxabi_names.h"
#undef FX_ABI_GUID
#undef FX_ABI_NUM
#undef FX_ABI_INT
};
#define NENTRIES (sizeof(entries) / sizeof(entries[0]))

/* Which values must differ: by name prefix. */
static const char *group_of(const char *name)
{
    static const char *const prefixes[] = { "FWX_PROTOCOL_", "FWX_FLAG_", "FWX_SESSION_",
                                            "fwxSource", "fwx_" };
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (!strncmp(name, prefixes[i], strlen(prefixes[i])))
            return prefixes[i];
    return name;
}

static const char *where(const fx_abi_value *v, char *buf, size_t len)
{
    if (!v)
        snprintf(buf, len, "the default");
    else if (v->file)
        snprintf(buf, len, "%s:%d", v->file, v->line);
    else
        snprintf(buf, len, "the command line");
    return buf;
}

static int fail(const fx_abi_value *v, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(const fx_abi_value *v, char *err, size_t errlen, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (v && v->file)
        snprintf(err, errlen, "%s:%d: [abi] %s", v->file, v->line, msg);
    else
        snprintf(err, errlen, "[abi] %s", msg);
    return -1;
}

int abi_apply(const struct fx_config *cfg, char *err, size_t errlen)
{
    char g1[39], g2[39], w[300];

    for (size_t i = 0; i < NENTRIES; i++)
        if (!entries[i].guid)
            entries[i].group = group_of(entries[i].name);
    for (size_t k = 0; k < cfg->nabi; k++) {
        const fx_abi_value *v = &cfg->abi[k];
        struct abi_entry *e = NULL;
        for (size_t i = 0; i < NENTRIES && !e; i++)
            if (!strcmp(entries[i].name, v->name))
                e = &entries[i];
        if (!e)     /* fxconf.c and this table come from the same list */
            return fail(v, err, errlen, "%s: no such value in this host", v->name);
        if (e->guid && v->is_guid) {
            GUID g;
            memcpy(&g, &v->guid, sizeof(g));    /* fx_guid has the Win32 layout */
            fx_log(FX_LOG_NOTICE, "abi: %s = %s (%s; was %s)", e->name, fx_guid_str(&g, g1),
                   where(v, w, sizeof(w)), fx_guid_str(e->guid, g2));
            *e->guid = g;
        } else if (e->num && !v->is_guid) {
            fx_log(FX_LOG_NOTICE, "abi: %s = 0x%08lx (%s; was 0x%08lx)", e->name,
                   (unsigned long)v->value, where(v, w, sizeof(w)), (unsigned long)*e->num);
            *e->num = v->value;
        } else {
            return fail(v, err, errlen, "%s: wrong kind of value", v->name);
        }
        e->from = v;
    }
    /* Two interfaces with one IID, or two flags with one value, cannot be told apart. */
    for (size_t i = 0; i < NENTRIES; i++)
        for (size_t j = i + 1; j < NENTRIES; j++) {
            struct abi_entry *a = &entries[i], *b = &entries[j], *blame;
            BOOL same;
            if (strcmp(a->group, b->group))
                continue;
            same = a->guid ? IsEqualGUID(a->guid, b->guid) : *a->num == *b->num;
            if (!same)
                continue;
            blame = b->from ? b : a;
            if (a->guid)
                return fail(blame->from, err, errlen, "%s and %s would both be %s (%s is set at %s)",
                            a->name, b->name, fx_guid_str(a->guid, g1), blame->name,
                            where(blame->from, w, sizeof(w)));
            return fail(blame->from, err, errlen, "%s and %s would both be 0x%lx (%s is set at %s)",
                        a->name, b->name, (unsigned long)*a->num, blame->name,
                        where(blame->from, w, sizeof(w)));
        }
    for (size_t i = 0; i < NENTRIES; i++)
        if (entries[i].num && !strncmp(entries[i].name, "FWX_FLAG_", 9) && !*entries[i].num)
            return fail(entries[i].from, err, errlen, "%s = 0: a flag needs a bit", entries[i].name);
    return 0;
}

const char *abi_guid_name(const GUID *g)
{
    for (size_t i = 0; i < NENTRIES; i++)
        if (entries[i].guid && IsEqualGUID(entries[i].guid, g))
            return entries[i].name;
    return NULL;
}
