/*
 * faultkit.h - what the fault-injection test filters (crasher, hanger, leaker, garbage,
 * trapper) share beyond the filter kit: their hook events, the settings they read
 * (numbers, port lists), the fault they commit and a seeded generator. Each of them is
 * a kit filter (fltkit.h: the passthrough pump) whose callbacks misbehave, mostly in
 * KitClass.answer (a fault, a trap or a garbage answer once the kit's work is done).
 *
 * A filter source includes this file instead of fltkit.h. Every misbehaviour is driven
 * by the environment, read once in FilterInit (KitClass.init), and any randomness comes
 * from a seed in the environment, so a test run can be repeated.
 */
#ifndef FWX_FAULTKIT_H
#define FWX_FAULTKIT_H

#include "fltkit.h"

#include <stdlib.h>
#include <string.h>

/* The global hook events of every fault filter (KitClass.events). */
#define FK_EVENTS (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES)

/* Unsigned value of an environment variable, or def when unset or not a number. */
static inline unsigned long fk_env_ulong(const char *name, unsigned long def)
{
    char *text = fwx_getenv(name, ""), *end;
    unsigned long v = def;
    if (text && *text) {
        v = strtoul(text, &end, 0);
        if (*end)
            v = def;
    }
    fwx_free(text);
    return v;
}

/* The port an event is about: the local (listening) port of an accepted connection,
 * the destination port of an outbound connect, 0 for anything else. */
static inline unsigned fk_event_port(const FirewallEvent *event)
{
    const SOCKADDR *sa = NULL;
    if (event->EventType == fwx_AcceptedConnection)
        sa = event->Parameters.Accept.LocalAddress;
    else if (event->EventType == fwx_Connect_Tcp)
        sa = event->Parameters.Connect.Address;
    if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
        return 0;
    return ntohs(((const SOCKADDR_IN *)sa)->sin_port);   /* same offset in SOCKADDR_IN6 */
}

/* Is port in the comma-separated list? An empty or unset list means every port. */
static inline BOOL fk_port_listed(const char *list, unsigned port)
{
    const char *p = list;
    if (!list || !*list)
        return TRUE;
    while (*p) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end != p && v == port)
            return TRUE;
        p = *end ? end + 1 : end;
    }
    return FALSE;
}

/* FK_MAX_PORTS ports of a comma-separated list (unset or empty: nothing to do) become
 * the filter's hook events: connection events through one port range each, so the host
 * knows which rules the filter applies to, and no global event bits. RANGES must live
 * as long as the filter (the host reads them after FilterInit). */
#define FK_MAX_PORTS 16
static inline void fk_hook_ports(KitFilter *filter, const char *ports, FwxPortRangeEvents *ranges)
{
    DWORD n = 0;

    if (!ports || !*ports)
        return;
    for (const char *p = ports; *p && n < FK_MAX_PORTS; p = *p ? p + 1 : p) {
        char *end;
        unsigned long port = strtoul(p, &end, 10);
        if (end != p && port && port < 65536) {
            ranges[n].dwEvents = fwx_Connect_Tcp | fwx_AcceptedConnection;
            ranges[n].dwLowPort = ranges[n].dwHighPort = port;
            n++;
        }
        p = end;
        while (*p && *p != ',')
            p++;
    }
    filter->hooks.dwGlobalEvents = FWX_ALL_SOURCES;    /* the event bits come per port */
    filter->hooks.dwNumPortRanges = n;
    filter->hooks.PortRangeEvents = ranges;
}

/* The fault every misbehaving filter commits: a write through a NULL pointer that the
 * compiler cannot see is NULL (it would otherwise emit a trap instruction instead). */
static int *volatile fk_null_pointer;
static inline void fk_crash(void)
{
    *fk_null_pointer = 0x0BAD;
}

/* splitmix64: a small deterministic generator for the seeded filters. */
static inline unsigned long long fk_next(unsigned long long *state)
{
    unsigned long long z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

#endif /* FWX_FAULTKIT_H */
