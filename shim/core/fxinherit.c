/*
 * fxinherit.c - the FWX_LISTEN_FDS list of sockets a supervisor hands down
 * (see fxinherit.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fxconf.h"
#include "fxinherit.h"

int fx_inherited(void)
{
    return getenv(FX_INHERIT_ENV) != NULL;
}

int fx_inherited_fd(const char *key)
{
    const char *p = getenv(FX_INHERIT_ENV);
    size_t klen = strlen(key);

    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > klen + 1 && !strncmp(p, key, klen) && p[klen] == '=') {
            char *stop;
            long fd = strtol(p + klen + 1, &stop, 10);
            if (stop == p + len && fd >= 0 && fd < 1 << 20)
                return (int)fd;
            return -1;
        }
        p = end ? end + 1 : NULL;
    }
    return -1;
}

int fx_inherit_add(char *buf, size_t len, const char *key, int fd)
{
    size_t have = strlen(buf);
    int n = snprintf(buf + have, len - have, "%s%s=%d", have ? "," : "", key, fd);
    if (n < 0 || (size_t)n >= len - have) {
        buf[have] = 0;
        return -1;
    }
    return 0;
}

struct fx_config *fx_config_load_as_handed(const char *path, char *err, size_t errlen)
{
    const char *v = getenv(FX_CONFIG_ENV);
    char *end;
    long fd = v ? strtol(v, &end, 10) : -1;
    if (v && !*end && fd >= 0 && fd < 1 << 20)
        return fx_config_load_fd((int)fd, path, err, errlen);
    return fx_config_load(path, err, errlen);
}
