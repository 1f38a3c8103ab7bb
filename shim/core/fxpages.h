/*
 * fxpages.h — whole-page memory blocks for data a guest may keep a raw
 * pointer into (host I/O buffers, shim/com/iobuffer.c): allocated with
 * mmap, and "reclaimed" without ever being reused: the pages go back to
 * the kernel (MADV_DONTNEED) and lose all access (PROT_NONE), so a late
 * touch faults instead of corrupting memory that now holds other data.
 */
#ifndef FX_PAGES_H
#define FX_PAGES_H

#include <stddef.h>

/* size rounded up to whole pages. */
size_t fx_pages_round(size_t size);
/* A zero-filled, read-write block of fx_pages_round(size) bytes, or NULL. */
void *fx_pages_alloc(size_t size);
/* The block's memory returns to the system and every access faults from
 * now on; the address range stays reserved (never handed out again).
 * 0, or -errno. */
int fx_pages_reclaim(void *p, size_t size);
/* Unmaps a block (reclaimed or not). */
void fx_pages_free(void *p, size_t size);

#endif
