/*
 * fxlog.c - process-wide logging to stderr (see fxlog.h).
 *
 * Owns the logger state.  State is read with relaxed atomics: a message
 * racing with a level change may use either level, which is harmless,
 * while a torn read of a plain int under a data race is not something we
 * want the thread sanitizer to keep reporting.
 */
#define _GNU_SOURCE
#include "fxlog.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define FX_LOG_STACK_MSG   4096     /* messages this long never touch the heap */
#define FX_LOG_HEADER_MAX  128      /* "<7>" + progname (63) + "[pid]: " + level */

static char fx_log_progname[64] = "fwxshim";
static atomic_int fx_log_level_cur = FX_LOG_NOTICE;
/* -1: not decided yet; decided on first use from isatty(2). */
static atomic_int fx_log_prefix = -1;

static int fx_log_valid(int level)
{
    return level >= FX_LOG_ERROR && level <= FX_LOG_DEBUG;
}

void fx_log_init(const char *progname, int level)
{
    if (progname != NULL) {
        const char *slash = strrchr(progname, '/');
        if (slash != NULL && slash[1] != '\0')
            progname = slash + 1;
        snprintf(fx_log_progname, sizeof(fx_log_progname), "%s", progname);
    }
    fx_log_set_level(level);
    atomic_store_explicit(&fx_log_prefix, isatty(STDERR_FILENO) ? 0 : 1,
                          memory_order_relaxed);
}

void fx_log_set_level(int level)
{
    if (level < FX_LOG_ERROR)
        level = FX_LOG_ERROR;
    if (level > FX_LOG_DEBUG)
        level = FX_LOG_DEBUG;
    atomic_store_explicit(&fx_log_level_cur, level, memory_order_relaxed);
}

int fx_log_get_level(void)
{
    return atomic_load_explicit(&fx_log_level_cur, memory_order_relaxed);
}

void fx_log_set_syslog_prefix(int on)
{
    atomic_store_explicit(&fx_log_prefix, on ? 1 : 0, memory_order_relaxed);
}

int fx_log_level_parse(const char *text)
{
    static const struct { const char *name; int level; } names[] = {
        { "error", FX_LOG_ERROR }, { "warn", FX_LOG_WARN },
        { "warning", FX_LOG_WARN }, { "notice", FX_LOG_NOTICE },
        { "info", FX_LOG_INFO }, { "debug", FX_LOG_DEBUG },
    };
    if (text == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcasecmp(text, names[i].name) == 0)
            return names[i].level;
    return -1;
}

const char *fx_log_level_name(int level)
{
    static const char *const names[] = { "ERROR", "WARN", "NOTICE", "INFO", "DEBUG" };
    return fx_log_valid(level) ? names[level - FX_LOG_ERROR] : "?";
}

int fx_log_enabled(int level)
{
    return level <= atomic_load_explicit(&fx_log_level_cur, memory_order_relaxed);
}

/* A pipe or socket write larger than PIPE_BUF may be split by the kernel;
 * retrying the remainder keeps the line whole from our side at least. */
static void fx_log_write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

void fx_log(int level, const char *fmt, ...)
{
    char stackbuf[FX_LOG_HEADER_MAX + FX_LOG_STACK_MSG + 2];
    char *buf = stackbuf;
    size_t cap = sizeof(stackbuf);
    int saved_errno = errno;
    int hlen, mlen, prefix;
    size_t len;
    va_list ap;

    if (!fx_log_enabled(level))
        goto out;
    if (!fx_log_valid(level))
        level = FX_LOG_ERROR;

    prefix = atomic_load_explicit(&fx_log_prefix, memory_order_relaxed);
    if (prefix < 0) {
        prefix = isatty(STDERR_FILENO) ? 0 : 1;
        atomic_store_explicit(&fx_log_prefix, prefix, memory_order_relaxed);
    }

    if (prefix)
        hlen = snprintf(buf, FX_LOG_HEADER_MAX, "<%d>%s[%ld]: %s: ", level,
                        fx_log_progname, (long)getpid(), fx_log_level_name(level));
    else
        hlen = snprintf(buf, FX_LOG_HEADER_MAX, "%s[%ld]: %s: ",
                        fx_log_progname, (long)getpid(), fx_log_level_name(level));
    if (hlen < 0)
        goto out;
    if ((size_t)hlen >= FX_LOG_HEADER_MAX)
        hlen = FX_LOG_HEADER_MAX - 1;   /* cannot happen: progname is capped */

    va_start(ap, fmt);
    errno = saved_errno;               /* so %m reports the caller's errno */
    mlen = vsnprintf(buf + hlen, cap - (size_t)hlen - 1, fmt, ap);
    va_end(ap);
    if (mlen < 0)
        goto out;

    if ((size_t)mlen >= cap - (size_t)hlen - 1) {
        /* Too long for the stack buffer: one heap buffer of the exact size,
         * or a visibly cut line if even that fails. */
        size_t need = (size_t)hlen + (size_t)mlen + 2;
        char *big = malloc(need);
        if (big != NULL) {
            memcpy(big, buf, (size_t)hlen);
            va_start(ap, fmt);
            errno = saved_errno;
            vsnprintf(big + hlen, need - (size_t)hlen - 1, fmt, ap);
            va_end(ap);
            buf = big;
            cap = need;
            len = (size_t)hlen + (size_t)mlen;
        } else {
            static const char marker[] = " [message cut: out of memory]";
            len = cap - 2 - (sizeof(marker) - 1);
            memcpy(buf + len, marker, sizeof(marker) - 1);
            len += sizeof(marker) - 1;
        }
    } else {
        len = (size_t)hlen + (size_t)mlen;
    }

    if (len > (size_t)hlen && buf[len - 1] == '\n')
        len--;
    buf[len++] = '\n';
    fx_log_write_all(buf, len);

    if (buf != stackbuf)
        free(buf);
out:
    errno = saved_errno;
}
