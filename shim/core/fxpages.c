/*
 * fxpages.c — whole-page blocks (fxpages.h): mmap, madvise + mprotect,
 * munmap. Pure C, no Wine.
 */
#include "fxpages.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

size_t fx_pages_round(size_t size)
{
    static size_t page;
    if (!page) {
        long p = sysconf(_SC_PAGESIZE);
        page = p > 0 ? (size_t)p : 4096;
    }
    if (!size)
        size = 1;
    return (size + page - 1) & ~(page - 1);
}

void *fx_pages_alloc(size_t size)
{
    void *p = mmap(NULL, fx_pages_round(size), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int fx_pages_reclaim(void *p, size_t size)
{
    size_t len = fx_pages_round(size);
    /* Order matters for a concurrent reader: after DONTNEED alone it would
     * read zeroes (and a write would bring a fresh page back); mprotect
     * makes every later access fault. */
    if (madvise(p, len, MADV_DONTNEED) != 0)
        return -errno;
    if (mprotect(p, len, PROT_NONE) != 0)
        return -errno;
    return 0;
}

void fx_pages_free(void *p, size_t size)
{
    if (p)
        munmap(p, fx_pages_round(size));
}
