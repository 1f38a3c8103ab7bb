/*
 * fxpe.h - PE (Portable Executable) reader for filter DLLs.
 *
 * Owns the interpretation of untrusted PE bytes: the launcher picks the
 * i386 or x86_64 host from the machine field, and fwxinfo shows exports,
 * imports and sections.  Every offset and size read from the file is
 * bounds-checked; RVAs are mapped to file offsets through the section
 * table.  Intended to be fed hostile input (it is a fuzz target).
 */
#ifndef FX_PE_H
#define FX_PE_H

#include <stddef.h>
#include <stdint.h>

#define FX_PE_MACHINE_I386  0x014cu
#define FX_PE_MACHINE_AMD64 0x8664u

typedef struct fx_pe_export {
    char *name;            /* NULL when exported by ordinal only */
    unsigned ordinal;      /* biased: what GetProcAddress(MAKEINTRESOURCE) takes */
    uint32_t rva;
    char *forwarder;       /* "DLL.Function" when the export is forwarded, else NULL */
} fx_pe_export;

typedef struct fx_pe_section {
    char name[9];          /* NUL-terminated; non-printable bytes shown as '?' */
    uint32_t vaddr;
    uint32_t vsize;
    uint32_t raw_offset;
    uint32_t raw_size;
    uint32_t characteristics;
} fx_pe_section;

typedef struct fx_pe_info {
    unsigned machine;      /* IMAGE_FILE_HEADER.Machine */
    int is_pe32plus;
    int is_dll;
    uint32_t timestamp;
    unsigned subsystem;
    unsigned characteristics;
    uint64_t image_base;
    uint32_t entry_rva;
    uint32_t size_of_image;
    unsigned nsections;
    fx_pe_section *sections;
    char *export_dll_name; /* the Name of the export directory, or NULL */
    fx_pe_export *exports; /* sorted by ordinal, then name */
    size_t nexports;
    char **imports;        /* imported DLL names, in table order */
    size_t nimports;
} fx_pe_info;

/* Parse an image held in memory.  On success 0 and *out filled (free it
 * with fx_pe_info_free); on failure -1, a message in err and *out left
 * empty (fx_pe_info_free on it is harmless). */
int fx_pe_parse(const unsigned char *data, size_t len, fx_pe_info *out,
                char *err, size_t errlen);

/* Reads the file and parses it.  Messages are prefixed with the path:
 * "cannot open FILE: No such file or directory", "FILE: not a PE file
 * (no MZ header)".  Files over 256 MiB are refused. */
int fx_pe_read_file(const char *path, fx_pe_info *out, char *err, size_t errlen);

void fx_pe_info_free(fx_pe_info *info);

/* "x86", "x64", "arm", "arm64", "ia64", else "unknown (0x1234)".  Known
 * names are literals; an unknown one lives in one of 16 static slots used
 * in turn, so it stays valid until 16 more unknown machines are named
 * (from any thread).  Never ELF TLS, which winelib threads do not honour
 * reliably. */
const char *fx_pe_machine_name(unsigned machine);

#endif /* FX_PE_H */
