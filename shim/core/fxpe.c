/*
 * fxpe.c - PE reader (see fxpe.h).
 *
 * Owns the parsing of untrusted images.  All reads go through fx_rd16 /
 * fx_rd32 / fx_rd64 on offsets already checked against the buffer length
 * (with 64-bit arithmetic, so no 32-bit offset sum can wrap), and all
 * directory data through fx_pe_rva, which only returns bytes that exist
 * in the file.  Counts taken from the file are capped before anything is
 * allocated from them.
 */
#define _GNU_SOURCE
#include "fxpe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FX_PE_MAX_FILE     (256u << 20)
#define FX_PE_MAX_EXPORTS  65536u      /* ordinals are 16-bit */
#define FX_PE_MAX_IMPORTS  4096u
#define FX_PE_MAX_NAME     4096u

#define FX_PE_DIR_EXPORT   0
#define FX_PE_DIR_IMPORT   1

struct fx_pe_ctx {
    const unsigned char *data;
    size_t len;
    const unsigned char *sect;   /* section table */
    unsigned nsect;
    uint32_t size_of_headers;
    char *err;
    size_t errlen;
};

static int fx_pe_fail(struct fx_pe_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fx_pe_fail(struct fx_pe_ctx *c, const char *fmt, ...)
{
    va_list ap;
    if (c->err != NULL && c->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static uint16_t fx_rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t fx_rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t fx_rd64(const unsigned char *p)
{
    return (uint64_t)fx_rd32(p) | (uint64_t)fx_rd32(p + 4) << 32;
}

/* Pointer to size bytes at rva, all inside the file and inside one
 * section's raw data (or the headers); NULL otherwise.  *avail (optional)
 * gets how many bytes are readable from there. */
static const unsigned char *fx_pe_rva(const struct fx_pe_ctx *c, uint32_t rva, uint64_t size,
                                      uint64_t *avail)
{
    for (unsigned i = 0; i < c->nsect; i++) {
        const unsigned char *s = c->sect + (size_t)i * 40;
        uint32_t vsize = fx_rd32(s + 8), vaddr = fx_rd32(s + 12);
        uint32_t rawsize = fx_rd32(s + 16), rawoff = fx_rd32(s + 20);
        uint64_t span = vsize ? vsize : rawsize;
        if (rva < vaddr || (uint64_t)rva >= (uint64_t)vaddr + span)
            continue;
        uint64_t delta = rva - vaddr;
        uint64_t inraw = rawsize < span ? rawsize : span;
        if (delta >= inraw)
            return NULL;             /* zero-fill: not in the file */
        uint64_t off = (uint64_t)rawoff + delta;
        if (off >= c->len)
            return NULL;
        uint64_t left = inraw - delta;
        if (left > c->len - off)
            left = c->len - off;
        if (left < size)
            return NULL;
        if (avail != NULL)
            *avail = left;
        return c->data + off;
    }
    if (rva < c->size_of_headers && rva < c->len) {
        uint64_t end = c->size_of_headers < c->len ? c->size_of_headers : c->len;
        if (end - rva < size)
            return NULL;
        if (avail != NULL)
            *avail = end - rva;
        return c->data + rva;
    }
    return NULL;
}

/* Copies the NUL-terminated string at rva; control bytes become '?' so a
 * hostile name cannot drive the terminal fwxinfo prints it to. */
static char *fx_pe_str(const struct fx_pe_ctx *c, uint32_t rva)
{
    uint64_t avail;
    const unsigned char *p = fx_pe_rva(c, rva, 1, &avail);
    const unsigned char *nul;
    char *s;

    if (p == NULL)
        return NULL;
    if (avail > FX_PE_MAX_NAME)
        avail = FX_PE_MAX_NAME;
    nul = memchr(p, 0, (size_t)avail);
    if (nul == NULL)
        return NULL;
    s = malloc((size_t)(nul - p) + 1);
    if (s == NULL)
        return NULL;
    for (size_t i = 0; p + i < nul; i++)
        s[i] = (p[i] < 0x20 || p[i] == 0x7f) ? '?' : (char)p[i];
    s[nul - p] = '\0';
    return s;
}

void fx_pe_info_free(fx_pe_info *info)
{
    if (info == NULL)
        return;
    for (size_t i = 0; i < info->nexports; i++) {
        free(info->exports[i].name);
        free(info->exports[i].forwarder);
    }
    free(info->exports);
    for (size_t i = 0; i < info->nimports; i++)
        free(info->imports[i]);
    free(info->imports);
    free(info->sections);
    free(info->export_dll_name);
    memset(info, 0, sizeof(*info));
}

static int fx_export_cmp(const void *a, const void *b)
{
    const fx_pe_export *x = a, *y = b;
    if (x->ordinal != y->ordinal)
        return x->ordinal < y->ordinal ? -1 : 1;
    if (x->name == NULL || y->name == NULL)
        return (x->name == NULL) - (y->name == NULL);
    return strcmp(x->name, y->name);
}

static int fx_pe_exports(struct fx_pe_ctx *c, uint32_t dir_rva, uint32_t dir_size, fx_pe_info *out)
{
    const unsigned char *ed, *funcs = NULL, *names = NULL, *ords = NULL;
    unsigned char *named = NULL;
    uint32_t nfunc, nnames, base;
    int rc = -1;

    ed = fx_pe_rva(c, dir_rva, 40, NULL);
    if (ed == NULL)
        return fx_pe_fail(c, "bad export directory (RVA 0x%x is not in the file)", dir_rva);
    base = fx_rd32(ed + 16);
    nfunc = fx_rd32(ed + 20);
    nnames = fx_rd32(ed + 24);
    if (nfunc > FX_PE_MAX_EXPORTS || nnames > FX_PE_MAX_EXPORTS)
        return fx_pe_fail(c, "bad export directory (%u functions, %u names)", nfunc, nnames);
    if (fx_rd32(ed + 12) != 0) {
        out->export_dll_name = fx_pe_str(c, fx_rd32(ed + 12));
        if (out->export_dll_name == NULL)
            return fx_pe_fail(c, "bad export directory (bad DLL name)");
    }
    if (nfunc == 0)
        return 0;
    funcs = fx_pe_rva(c, fx_rd32(ed + 28), (uint64_t)nfunc * 4, NULL);
    if (funcs == NULL)
        return fx_pe_fail(c, "bad export directory (function table outside the file)");
    if (nnames > 0) {
        names = fx_pe_rva(c, fx_rd32(ed + 32), (uint64_t)nnames * 4, NULL);
        ords = fx_pe_rva(c, fx_rd32(ed + 36), (uint64_t)nnames * 2, NULL);
        if (names == NULL || ords == NULL)
            return fx_pe_fail(c, "bad export directory (name table outside the file)");
    }

    named = calloc(nfunc, 1);
    out->exports = calloc((size_t)nfunc + nnames, sizeof(*out->exports));
    if (named == NULL || out->exports == NULL) {
        fx_pe_fail(c, "out of memory");
        goto done;
    }

    for (uint32_t j = 0; j < nnames; j++) {
        uint16_t idx = fx_rd16(ords + (size_t)j * 2);
        if (idx >= nfunc) {
            fx_pe_fail(c, "bad export directory (name %u refers to function %u of %u)", j, idx, nfunc);
            goto done;
        }
        fx_pe_export *e = &out->exports[out->nexports];
        e->name = fx_pe_str(c, fx_rd32(names + (size_t)j * 4));
        if (e->name == NULL) {
            fx_pe_fail(c, "bad export directory (bad name %u)", j);
            goto done;
        }
        e->ordinal = base + idx;
        e->rva = fx_rd32(funcs + (size_t)idx * 4);
        out->nexports++;
        named[idx] = 1;
    }
    for (uint32_t i = 0; i < nfunc; i++) {
        uint32_t frva = fx_rd32(funcs + (size_t)i * 4);
        if (named[i] || frva == 0)
            continue;
        fx_pe_export *e = &out->exports[out->nexports++];
        e->ordinal = base + i;
        e->rva = frva;
    }
    /* An export whose RVA points back into the export directory is a
     * forwarder string, not code. */
    for (size_t k = 0; k < out->nexports; k++) {
        fx_pe_export *e = &out->exports[k];
        if (e->rva >= dir_rva && (uint64_t)e->rva < (uint64_t)dir_rva + dir_size) {
            e->forwarder = fx_pe_str(c, e->rva);
            if (e->forwarder == NULL) {
                fx_pe_fail(c, "bad export directory (bad forwarder for ordinal %u)", e->ordinal);
                goto done;
            }
        }
    }
    qsort(out->exports, out->nexports, sizeof(*out->exports), fx_export_cmp);
    rc = 0;

done:
    free(named);
    return rc;
}

static int fx_pe_imports(struct fx_pe_ctx *c, uint32_t dir_rva, fx_pe_info *out)
{
    size_t cap = 0;

    for (uint32_t i = 0;; i++) {
        uint64_t at = (uint64_t)dir_rva + (uint64_t)i * 20;
        const unsigned char *d;
        if (i >= FX_PE_MAX_IMPORTS)
            return fx_pe_fail(c, "bad import directory (more than %u DLLs)", FX_PE_MAX_IMPORTS);
        if (at > UINT32_MAX || (d = fx_pe_rva(c, (uint32_t)at, 20, NULL)) == NULL)
            return fx_pe_fail(c, "bad import directory (not terminated inside the file)");
        uint32_t name = fx_rd32(d + 12), first_thunk = fx_rd32(d + 16);
        /* The loader stops at the first descriptor without a name or IAT. */
        if (name == 0 || first_thunk == 0)
            return 0;
        if (out->nimports == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            char **ni = realloc(out->imports, ncap * sizeof(*ni));
            if (ni == NULL)
                return fx_pe_fail(c, "out of memory");
            out->imports = ni;
            cap = ncap;
        }
        out->imports[out->nimports] = fx_pe_str(c, name);
        if (out->imports[out->nimports] == NULL)
            return fx_pe_fail(c, "bad import directory (bad DLL name in entry %u)", i);
        out->nimports++;
    }
}

int fx_pe_parse(const unsigned char *data, size_t len, fx_pe_info *out,
                char *err, size_t errlen)
{
    struct fx_pe_ctx c = { data, len, NULL, 0, 0, err, errlen };
    uint64_t pe, opt, sect;
    unsigned optsize, magic, ndirs_max, dirs_at;
    uint32_t ndirs;
    const unsigned char *o;

    memset(out, 0, sizeof(*out));
    if (data == NULL || len < 2 || data[0] != 'M' || data[1] != 'Z')
        return fx_pe_fail(&c, "not a PE file (no MZ header)");
    if (len < 64)
        return fx_pe_fail(&c, "truncated PE header");
    pe = fx_rd32(data + 0x3c);
    if (pe + 4 > len || memcmp(data + pe, "PE\0\0", 4) != 0)
        return fx_pe_fail(&c, "not a PE file (no PE signature)");
    if (pe + 24 > len)
        return fx_pe_fail(&c, "truncated PE header");

    const unsigned char *fh = data + pe + 4;
    out->machine = fx_rd16(fh);
    c.nsect = fx_rd16(fh + 2);
    out->timestamp = fx_rd32(fh + 4);
    optsize = fx_rd16(fh + 16);
    out->characteristics = fx_rd16(fh + 18);
    out->is_dll = (out->characteristics & 0x2000) != 0;

    opt = pe + 24;
    if (optsize < 2 || opt + optsize > len)
        return fx_pe_fail(&c, "truncated PE header");
    o = data + opt;
    magic = fx_rd16(o);
    if (magic == 0x10b) {
        dirs_at = 96;
    } else if (magic == 0x20b) {
        dirs_at = 112;
        out->is_pe32plus = 1;
    } else {
        return fx_pe_fail(&c, "unknown optional header magic 0x%x", magic);
    }
    if (optsize < dirs_at)
        return fx_pe_fail(&c, "truncated PE header");
    out->entry_rva = fx_rd32(o + 16);
    out->image_base = out->is_pe32plus ? fx_rd64(o + 24) : fx_rd32(o + 28);
    out->size_of_image = fx_rd32(o + 56);
    c.size_of_headers = fx_rd32(o + 60);
    out->subsystem = fx_rd16(o + 68);
    ndirs = fx_rd32(o + dirs_at - 4);
    ndirs_max = (optsize - dirs_at) / 8;
    if (ndirs > ndirs_max)
        ndirs = ndirs_max;
    if (ndirs > 16)
        ndirs = 16;

    sect = opt + optsize;
    if (sect + (uint64_t)c.nsect * 40 > len)
        return fx_pe_fail(&c, "truncated section table (%u sections)", c.nsect);
    c.sect = data + sect;
    out->nsections = c.nsect;
    if (c.nsect > 0) {
        out->sections = calloc(c.nsect, sizeof(*out->sections));
        if (out->sections == NULL) {
            fx_pe_fail(&c, "out of memory");
            goto fail;
        }
    }
    for (unsigned i = 0; i < c.nsect; i++) {
        const unsigned char *s = c.sect + (size_t)i * 40;
        fx_pe_section *d = &out->sections[i];
        for (int k = 0; k < 8 && s[k] != 0; k++)
            d->name[k] = (s[k] < 0x20 || s[k] >= 0x7f) ? '?' : (char)s[k];
        d->vsize = fx_rd32(s + 8);
        d->vaddr = fx_rd32(s + 12);
        d->raw_size = fx_rd32(s + 16);
        d->raw_offset = fx_rd32(s + 20);
        d->characteristics = fx_rd32(s + 36);
    }

    if (ndirs > FX_PE_DIR_EXPORT) {
        uint32_t rva = fx_rd32(o + dirs_at), size = fx_rd32(o + dirs_at + 4);
        if (rva != 0 && fx_pe_exports(&c, rva, size, out) < 0)
            goto fail;
    }
    if (ndirs > FX_PE_DIR_IMPORT) {
        uint32_t rva = fx_rd32(o + dirs_at + 8);
        if (rva != 0 && fx_pe_imports(&c, rva, out) < 0)
            goto fail;
    }
    return 0;

fail:
    fx_pe_info_free(out);
    return -1;
}

int fx_pe_read_file(const char *path, fx_pe_info *out, char *err, size_t errlen)
{
    char perr[256], dummy[1];
    unsigned char *buf = NULL;
    struct stat st;
    size_t got = 0;
    int fd, rc = -1;

    memset(out, 0, sizeof(*out));
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        goto done;
    }
    if ((uint64_t)st.st_size > FX_PE_MAX_FILE) {
        snprintf(err, errlen, "%s: too large for a filter DLL (%lld bytes)", path,
                 (long long)st.st_size);
        goto done;
    }
    buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;   /* shrank under us: parse what we have */
        got += (size_t)n;
    }
    if (fx_pe_parse(buf, got, out, perr, sizeof(perr)) < 0) {
        snprintf(err, errlen, "%s: %s", path, perr);
        goto done;
    }
    rc = 0;

done:
    free(buf);
    close(fd);
    return rc;
}

const char *fx_pe_machine_name(unsigned machine)
{
    /* No _Thread_local here: this may be inlined into code that runs under
     * the Microsoft calling convention, where gcc's TLS access clobbers
     * registers that convention preserves (see shim/com/fwxhost.h).  A ring of slots
     * instead: a result stays valid until FX_PE_NAME_SLOTS more unknown
     * machines have been named, which is plenty for a log line. */
    enum { FX_PE_NAME_SLOTS = 16 };
    static char unknown[FX_PE_NAME_SLOTS][24];
    static atomic_uint next;
    char *slot;

    switch (machine) {
    case 0x014c: return "x86";
    case 0x8664: return "x64";
    case 0x01c0:
    case 0x01c4: return "arm";
    case 0xaa64: return "arm64";
    case 0x0200: return "ia64";
    default:
        slot = unknown[atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) % FX_PE_NAME_SLOTS];
        snprintf(slot, sizeof(unknown[0]), "unknown (0x%x)", machine);
        return slot;
    }
}
