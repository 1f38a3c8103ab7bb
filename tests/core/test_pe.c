/*
 * test_pe.c - unit tests for shim/core/fxpe.  Builds minimal PE32 and
 * PE32+ DLL images in memory (two sections, an export directory with
 * named, ordinal-only and forwarded exports, an import directory), checks
 * what the reader reports, then feeds it truncated, corrupted and random
 * images.  Each hostile input is copied into a buffer of exactly its size
 * so valgrind or ASan flag any read past the end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "fxpe.h"

#define IMG_SIZE 0x800

static void w16(unsigned char *p, unsigned v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void w32(unsigned char *p, uint32_t v) { w16(p, v & 0xffff); w16(p + 2, v >> 16); }
static void w64(unsigned char *p, uint64_t v) { w32(p, (uint32_t)v); w32(p + 4, (uint32_t)(v >> 32)); }

/* File offsets of interesting structures, for the corruption tests. */
#define OFF_PE      0x80
#define OFF_COFF    (OFF_PE + 4)
#define OFF_OPT     (OFF_PE + 24)
#define RDATA_RVA   0x2000
#define RDATA_OFF   0x400
#define R2F(rva)    ((rva) - RDATA_RVA + RDATA_OFF)
#define EXP_RVA     0x2000
#define FUNCS_RVA   0x2040
#define NAMES_RVA   0x2060
#define ORDS_RVA    0x2070
#define STR_RVA     0x2080
#define IMP_RVA     0x2100
#define IMPSTR_RVA  0x2160

static size_t opt_size(int is64) { return is64 ? 0xF0 : 0xE0; }
static size_t dirs_off(int is64) { return OFF_OPT + (is64 ? 112 : 96); }
static size_t sect_off(int is64) { return OFF_OPT + opt_size(is64); }

/* Returns the offsets of the strings written at STR_RVA, in order. */
static uint32_t put_str(unsigned char *img, uint32_t *rva, const char *s)
{
    uint32_t at = *rva;
    memcpy(img + R2F(at), s, strlen(s) + 1);
    *rva += (uint32_t)strlen(s) + 1;
    return at;
}

static void build_pe(unsigned char *img, int is64)
{
    unsigned char *o, *s;
    uint32_t str = STR_RVA, dllname, n_unload, n_getco, n_fwd, fwd, k32, ole;

    memset(img, 0, IMG_SIZE);
    img[0] = 'M';
    img[1] = 'Z';
    w32(img + 0x3c, OFF_PE);
    memcpy(img + OFF_PE, "PE\0\0", 4);

    w16(img + OFF_COFF, is64 ? 0x8664 : 0x14c);
    w16(img + OFF_COFF + 2, 2);                       /* sections */
    w32(img + OFF_COFF + 4, 0x3A4B5C6D);              /* timestamp */
    w16(img + OFF_COFF + 16, (unsigned)opt_size(is64));
    w16(img + OFF_COFF + 18, is64 ? 0x2022 : 0x2102); /* DLL | ... */

    o = img + OFF_OPT;
    w16(o, is64 ? 0x20b : 0x10b);
    w32(o + 16, 0x1000);                              /* entry point */
    if (is64)
        w64(o + 24, 0x180000000ull);
    else
        w32(o + 28, 0x10000000);
    w32(o + 32, 0x1000);
    w32(o + 36, 0x200);
    w32(o + 56, 0x3000);                              /* SizeOfImage */
    w32(o + 60, 0x200);                               /* SizeOfHeaders */
    w16(o + 68, 2);                                   /* GUI */
    w32(o + (is64 ? 108 : 92), 16);
    w32(img + dirs_off(is64) + 0, EXP_RVA);
    w32(img + dirs_off(is64) + 4, 0x100);
    w32(img + dirs_off(is64) + 8, IMP_RVA);
    w32(img + dirs_off(is64) + 12, 60);

    s = img + sect_off(is64);
    memcpy(s, ".text", 5);
    w32(s + 8, 0x100);
    w32(s + 12, 0x1000);
    w32(s + 16, 0x200);
    w32(s + 20, 0x200);
    w32(s + 36, 0x60000020);
    s += 40;
    memcpy(s, ".rdata", 6);
    w32(s + 8, 0x400);
    w32(s + 12, RDATA_RVA);
    w32(s + 16, 0x400);
    w32(s + 20, RDATA_OFF);
    w32(s + 36, 0x40000040);

    /* Strings first, so the tables can point at them. */
    dllname = put_str(img, &str, "testfilter.dll");
    n_unload = put_str(img, &str, "DllCanUnloadNow");
    n_getco = put_str(img, &str, "DllGetClassObject");
    n_fwd = put_str(img, &str, "Forwarded");
    fwd = put_str(img, &str, "KERNEL32.Sleep");

    unsigned char *ed = img + R2F(EXP_RVA);
    w32(ed + 12, dllname);
    w32(ed + 16, 1);               /* Base */
    w32(ed + 20, 5);               /* NumberOfFunctions */
    w32(ed + 24, 3);               /* NumberOfNames */
    w32(ed + 28, FUNCS_RVA);
    w32(ed + 32, NAMES_RVA);
    w32(ed + 36, ORDS_RVA);
    w32(img + R2F(FUNCS_RVA) + 0, 0x1010);
    w32(img + R2F(FUNCS_RVA) + 4, 0x1020);
    w32(img + R2F(FUNCS_RVA) + 8, 0);          /* hole: ordinal 3 */
    w32(img + R2F(FUNCS_RVA) + 12, 0x1040);    /* ordinal 4, no name */
    w32(img + R2F(FUNCS_RVA) + 16, fwd);       /* inside the directory */
    w32(img + R2F(NAMES_RVA) + 0, n_unload);
    w32(img + R2F(NAMES_RVA) + 4, n_getco);
    w32(img + R2F(NAMES_RVA) + 8, n_fwd);
    w16(img + R2F(ORDS_RVA) + 0, 0);
    w16(img + R2F(ORDS_RVA) + 2, 1);
    w16(img + R2F(ORDS_RVA) + 4, 4);

    str = IMPSTR_RVA;
    k32 = put_str(img, &str, "KERNEL32.dll");
    ole = put_str(img, &str, "ole32.dll");
    unsigned char *id = img + R2F(IMP_RVA);
    w32(id + 0, 0x2180);
    w32(id + 12, k32);
    w32(id + 16, 0x2180);
    w32(id + 20 + 0, 0x2190);
    w32(id + 20 + 12, ole);
    w32(id + 20 + 16, 0x2190);
    /* third descriptor all zero: terminator */
}

static void check_info(const fx_pe_info *pi, int is64)
{
    assert_int_equal(pi->machine, is64 ? 0x8664 : 0x14c);
    assert_string_equal(fx_pe_machine_name(pi->machine), is64 ? "x64" : "x86");
    assert_int_equal(pi->is_pe32plus, is64);
    assert_true(pi->is_dll);
    assert_int_equal(pi->timestamp, 0x3A4B5C6D);
    assert_int_equal(pi->subsystem, 2);
    assert_int_equal(pi->entry_rva, 0x1000);
    assert_int_equal(pi->size_of_image, 0x3000);
    assert_true(pi->image_base == (is64 ? 0x180000000ull : 0x10000000ull));
    assert_int_equal(pi->nsections, 2);
    assert_string_equal(pi->sections[0].name, ".text");
    assert_string_equal(pi->sections[1].name, ".rdata");
    assert_int_equal(pi->sections[1].vaddr, RDATA_RVA);
    assert_int_equal(pi->sections[1].raw_offset, RDATA_OFF);

    assert_string_equal(pi->export_dll_name, "testfilter.dll");
    assert_int_equal(pi->nexports, 4);
    assert_int_equal(pi->exports[0].ordinal, 1);
    assert_string_equal(pi->exports[0].name, "DllCanUnloadNow");
    assert_int_equal(pi->exports[0].rva, 0x1010);
    assert_null(pi->exports[0].forwarder);
    assert_int_equal(pi->exports[1].ordinal, 2);
    assert_string_equal(pi->exports[1].name, "DllGetClassObject");
    assert_int_equal(pi->exports[1].rva, 0x1020);
    assert_int_equal(pi->exports[2].ordinal, 4);
    assert_null(pi->exports[2].name);
    assert_int_equal(pi->exports[2].rva, 0x1040);
    assert_int_equal(pi->exports[3].ordinal, 5);
    assert_string_equal(pi->exports[3].name, "Forwarded");
    assert_string_equal(pi->exports[3].forwarder, "KERNEL32.Sleep");

    assert_int_equal(pi->nimports, 2);
    assert_string_equal(pi->imports[0], "KERNEL32.dll");
    assert_string_equal(pi->imports[1], "ole32.dll");
}

static int parse_exact(const unsigned char *data, size_t len, fx_pe_info *pi, char *err, size_t errlen)
{
    unsigned char *copy = malloc(len ? len : 1);
    memcpy(copy, data, len);
    int rc = fx_pe_parse(copy, len, pi, err, errlen);
    free(copy);
    return rc;
}

static void test_valid_pe32(void **state)
{
    unsigned char img[IMG_SIZE];
    fx_pe_info pi;
    char err[256] = "";
    (void)state;

    build_pe(img, 0);
    if (parse_exact(img, sizeof(img), &pi, err, sizeof(err)) != 0)
        fail_msg("parse: %s", err);
    check_info(&pi, 0);
    fx_pe_info_free(&pi);
    fx_pe_info_free(&pi);   /* twice: harmless */
}

static void test_valid_pe32plus(void **state)
{
    unsigned char img[IMG_SIZE];
    fx_pe_info pi;
    char err[256] = "";
    (void)state;

    build_pe(img, 1);
    if (parse_exact(img, sizeof(img), &pi, err, sizeof(err)) != 0)
        fail_msg("parse: %s", err);
    check_info(&pi, 1);
    fx_pe_info_free(&pi);
}

static void test_read_file(void **state)
{
    unsigned char img[IMG_SIZE];
    char path[] = "/tmp/fxpetestXXXXXX", err[512], expect[512];
    fx_pe_info pi;
    int fd;
    (void)state;

    build_pe(img, 1);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, img, sizeof(img)), (ssize_t)sizeof(img));
    close(fd);
    assert_int_equal(fx_pe_read_file(path, &pi, err, sizeof(err)), 0);
    check_info(&pi, 1);
    fx_pe_info_free(&pi);

    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "hello, world\n", 13), 13);
    close(fd);
    assert_int_equal(fx_pe_read_file(path, &pi, err, sizeof(err)), -1);
    snprintf(expect, sizeof(expect), "%s: not a PE file (no MZ header)", path);
    assert_string_equal(err, expect);
    unlink(path);

    assert_int_equal(fx_pe_read_file("/nonexistent/filter.dll", &pi, err, sizeof(err)), -1);
    assert_string_equal(err, "cannot open /nonexistent/filter.dll: No such file or directory");
    assert_int_equal(fx_pe_read_file("/tmp", &pi, err, sizeof(err)), -1);
    assert_string_equal(err, "/tmp: not a regular file");
    assert_int_equal(fx_pe_read_file("/nonexistent/filter.dll", &pi, NULL, 0), -1);
}

static void expect_err(const unsigned char *data, size_t len, const char *msg)
{
    fx_pe_info pi;
    char err[256] = "";
    assert_int_equal(parse_exact(data, len, &pi, err, sizeof(err)), -1);
    assert_string_equal(err, msg);
    /* On failure nothing is left allocated. */
    assert_null(pi.exports);
    assert_null(pi.imports);
    assert_null(pi.sections);
    assert_int_equal(pi.nexports, 0);
}

static void test_header_errors(void **state)
{
    unsigned char img[IMG_SIZE], m[IMG_SIZE];
    (void)state;

    build_pe(img, 0);
    expect_err(img, 0, "not a PE file (no MZ header)");
    expect_err(img, 1, "not a PE file (no MZ header)");
    expect_err((const unsigned char *)"ZM\0\0", 4, "not a PE file (no MZ header)");
    expect_err(img, 2, "truncated PE header");
    expect_err(img, 63, "truncated PE header");
    expect_err(img, 64, "not a PE file (no PE signature)");          /* e_lfanew past end */
    expect_err(img, OFF_PE + 3, "not a PE file (no PE signature)");
    expect_err(img, OFF_PE + 4, "truncated PE header");
    expect_err(img, OFF_OPT + 10, "truncated PE header");

    memcpy(m, img, sizeof(m));
    w32(m + 0x3c, 0xFFFFFFF0);
    expect_err(m, sizeof(m), "not a PE file (no PE signature)");
    memcpy(m, img, sizeof(m));
    m[OFF_PE + 1] = 'X';
    expect_err(m, sizeof(m), "not a PE file (no PE signature)");
    memcpy(m, img, sizeof(m));
    w16(m + OFF_OPT, 0x107);
    expect_err(m, sizeof(m), "unknown optional header magic 0x107");
    memcpy(m, img, sizeof(m));
    w16(m + OFF_COFF + 16, 40);     /* optional header too small for its fields */
    expect_err(m, sizeof(m), "truncated PE header");
    memcpy(m, img, sizeof(m));
    w16(m + OFF_COFF + 16, 0xFFFF);
    expect_err(m, sizeof(m), "truncated PE header");
    memcpy(m, img, sizeof(m));
    w16(m + OFF_COFF + 2, 0xFFFF);
    expect_err(m, sizeof(m), "truncated section table (65535 sections)");
}

static void test_directory_errors(void **state)
{
    unsigned char img[IMG_SIZE], m[IMG_SIZE];
    unsigned char *ed;
    char msg[128];
    (void)state;

    build_pe(img, 0);
    ed = m + R2F(EXP_RVA);

    memcpy(m, img, sizeof(m));
    w32(ed + 20, 0xFFFFFFFF);
    expect_err(m, sizeof(m), "bad export directory (4294967295 functions, 3 names)");

    memcpy(m, img, sizeof(m));
    w32(ed + 20, 60000);           /* plausible count, table runs off the section */
    expect_err(m, sizeof(m), "bad export directory (function table outside the file)");

    memcpy(m, img, sizeof(m));
    w32(ed + 28, 0x7FFFFFFF);
    expect_err(m, sizeof(m), "bad export directory (function table outside the file)");

    memcpy(m, img, sizeof(m));
    w32(ed + 36, 0x23FF);          /* ordinals table straddles the section end */
    expect_err(m, sizeof(m), "bad export directory (name table outside the file)");

    memcpy(m, img, sizeof(m));
    w16(m + R2F(ORDS_RVA) + 4, 9);
    expect_err(m, sizeof(m), "bad export directory (name 2 refers to function 9 of 5)");

    memcpy(m, img, sizeof(m));
    w32(m + R2F(NAMES_RVA) + 4, 0x1500);   /* past .text's virtual size: in no section */
    expect_err(m, sizeof(m), "bad export directory (bad name 1)");

    /* A name running to the end of the section without a NUL. */
    memcpy(m, img, sizeof(m));
    memset(m + R2F(0x23F0), 'A', 16);
    w32(m + R2F(NAMES_RVA) + 0, 0x23F0);
    expect_err(m, sizeof(m), "bad export directory (bad name 0)");

    memcpy(m, img, sizeof(m));
    w32(ed + 12, 0x9000);
    expect_err(m, sizeof(m), "bad export directory (bad DLL name)");

    memcpy(m, img, sizeof(m));
    w32(m + dirs_off(0), 0x9000);
    expect_err(m, sizeof(m), "bad export directory (RVA 0x9000 is not in the file)");

    /* The file ends inside .rdata: its raw data is cut short. */
    snprintf(msg, sizeof(msg), "bad export directory (RVA 0x%x is not in the file)", EXP_RVA);
    expect_err(img, RDATA_OFF + 20, msg);

    /* Import descriptors that never terminate before the section ends. */
    memcpy(m, img, sizeof(m));
    for (uint32_t at = IMP_RVA; at + 20 <= 0x2400; at += 20) {
        w32(m + R2F(at) + 12, IMPSTR_RVA);
        w32(m + R2F(at) + 16, 0x2180);
    }
    expect_err(m, sizeof(m), "bad import directory (not terminated inside the file)");

    memcpy(m, img, sizeof(m));
    w32(m + R2F(IMP_RVA) + 20 + 12, 0x5000);
    expect_err(m, sizeof(m), "bad import directory (bad DLL name in entry 1)");

    /* Section raw data pointing past the end of the file. */
    memcpy(m, img, sizeof(m));
    w32(m + sect_off(0) + 40 + 20, 0x7FFFFF00);
    snprintf(msg, sizeof(msg), "bad export directory (RVA 0x%x is not in the file)", EXP_RVA);
    expect_err(m, sizeof(m), msg);

    /* Fewer data directories than needed: no exports, no imports, no error. */
    {
        fx_pe_info pi;
        char err[128];
        memcpy(m, img, sizeof(m));
        w32(m + OFF_OPT + 92, 0);
        assert_int_equal(parse_exact(m, sizeof(m), &pi, err, sizeof(err)), 0);
        assert_int_equal(pi.nexports, 0);
        assert_int_equal(pi.nimports, 0);
        assert_null(pi.export_dll_name);
        fx_pe_info_free(&pi);
    }
}

/* Every prefix of a valid image: an error or a consistent result, never a
 * read past the end. */
static void test_truncations(void **state)
{
    unsigned char img[IMG_SIZE];
    (void)state;

    for (int is64 = 0; is64 < 2; is64++) {
        build_pe(img, is64);
        int ok = 0;
        for (size_t len = 0; len <= sizeof(img); len++) {
            fx_pe_info pi;
            char err[256];
            if (parse_exact(img, len, &pi, err, sizeof(err)) == 0) {
                ok++;
                assert_int_equal(pi.nsections, 2);
                fx_pe_info_free(&pi);
            } else {
                assert_true(err[0] != '\0');
            }
        }
        /* Once all directory data is present the image parses. */
        assert_true(ok > 0);
    }
}

static uint64_t rng_state = 0x1234567887654321ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static void test_random_mutations(void **state)
{
    unsigned char img[IMG_SIZE], m[IMG_SIZE];
    int oks = 0, errs = 0;
    (void)state;

    for (int iter = 0; iter < 20000; iter++) {
        build_pe(img, iter & 1);
        memcpy(m, img, sizeof(m));
        int n = 1 + (int)(rnd() % 8);
        for (int k = 0; k < n; k++) {
            /* Bias towards the headers and directories, where the
             * offsets live. */
            size_t at = (rnd() & 1) ? rnd() % 0x200 : 0x400 + rnd() % 0x200;
            switch (rnd() % 4) {
            case 0: m[at] = (unsigned char)rnd(); break;
            case 1: m[at] ^= (unsigned char)(1u << (rnd() % 8)); break;
            case 2: if (at + 4 <= sizeof(m)) w32(m + at, rnd()); break;
            default: m[at] = 0xFF; break;
            }
        }
        size_t len = (rnd() % 4 == 0) ? rnd() % (sizeof(m) + 1) : sizeof(m);
        fx_pe_info pi;
        char err[256];
        if (parse_exact(m, len, &pi, err, sizeof(err)) == 0) {
            oks++;
            for (size_t i = 0; i < pi.nexports; i++)
                assert_true(pi.exports[i].name == NULL || strlen(pi.exports[i].name) < 4096);
            fx_pe_info_free(&pi);
        } else {
            errs++;
        }
    }
    assert_true(oks > 0);
    assert_true(errs > 0);

    /* Pure noise after an MZ. */
    for (int iter = 0; iter < 2000; iter++) {
        size_t len = rnd() % 1024;
        for (size_t i = 0; i < len; i++)
            m[i] = (unsigned char)rnd();
        if (len >= 2) {
            m[0] = 'M';
            m[1] = 'Z';
        }
        if (len >= 64)
            w32(m + 0x3c, rnd() % 512);
        fx_pe_info pi;
        char err[256];
        if (parse_exact(m, len, &pi, err, sizeof(err)) == 0)
            fx_pe_info_free(&pi);
    }
}

static void test_machine_names(void **state)
{
    (void)state;
    assert_string_equal(fx_pe_machine_name(0x14c), "x86");
    assert_string_equal(fx_pe_machine_name(0x8664), "x64");
    assert_string_equal(fx_pe_machine_name(0xaa64), "arm64");
    assert_string_equal(fx_pe_machine_name(0x1234), "unknown (0x1234)");
    assert_string_equal(fx_pe_machine_name(0), "unknown (0x0)");
    /* An unknown name survives the next calls (no shared single buffer). */
    const char *a = fx_pe_machine_name(0x1234);
    const char *b = fx_pe_machine_name(0x5678);
    assert_string_equal(a, "unknown (0x1234)");
    assert_string_equal(b, "unknown (0x5678)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_pe32),
        cmocka_unit_test(test_valid_pe32plus),
        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_directory_errors),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_random_mutations),
        cmocka_unit_test(test_machine_names),
    };
    return cmocka_run_group_tests_name("fxpe", tests, NULL, NULL);
}
