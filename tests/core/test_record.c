/*
 * test_record.c - unit tests for shim/core/fxrecord (fwxhost --record):
 * the script a recording writes parses back to the same actions, adjacent
 * reads are coalesced, ends are kept once, the cap truncates with a
 * comment, and file names never replace an existing file.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fxnet.h"
#include "fxrecord.h"
#include "fxscript.h"

static char dir[64];

static int setup(void **state)
{
    strcpy(dir, "/tmp/test_record.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static fx_rec *new_rec(const char *rule, unsigned long id, size_t max)
{
    static fx_sockaddr l, t, c;
    int ll = sizeof(l), tl = sizeof(t), cl = sizeof(c);
    char why[128];
    const char *filters[] = { "/x/passthrough.dll", "/x/rewrite.dll={C5B86DA9-D567-4E36-8A60-144A781CB066}" };
    assert_int_equal(fx_addr_parse("127.0.0.1:8080", &l, &ll, why, sizeof(why)), 0);
    assert_int_equal(fx_addr_parse("10.1.2.3:25", &t, &tl, why, sizeof(why)), 0);
    assert_int_equal(fx_addr_parse("[::1]:40000", &c, &cl, why, sizeof(why)), 0);
    fx_rec_info in = { .dir = dir, .rule = rule, .type = FX_RULE_OUTBOUND,
                       .listen = &l, .listen_len = ll, .target = &t, .target_len = tl,
                       .client = &c, .client_len = cl, .filters = filters, .nfilters = 2,
                       .id = id, .max_bytes = max, .start = 1764118000 };
    fx_rec *r = fx_rec_new(&in);
    assert_non_null(r);
    return r;
}

static fx_script *write_and_load(fx_rec *r, char *path, size_t len)
{
    char err[512];
    assert_int_equal(fx_rec_write(r, path, len, err, sizeof(err)), 0);
    fx_script *s = fx_script_load(path, err, sizeof(err));
    if (!s)
        fail_msg("the recording does not parse: %s", err);
    return s;
}

static void test_roundtrip(void **state)
{
    char path[512];
    fx_rec *r = new_rec("web/1", 7, 0);
    fx_rec_data(r, FX_REC_CLIENT, "HELO ", 5);
    fx_rec_data(r, FX_REC_CLIENT, "x\r\n", 3);          /* coalesced with the read before */
    fx_rec_data(r, FX_REC_SERVER, "\x00\xff\"\\", 4);
    fx_rec_end(r, FX_REC_CLIENT, 0);
    fx_rec_data(r, FX_REC_CLIENT, "late", 4);           /* after its EOF: ignored */
    fx_rec_end(r, FX_REC_CLIENT, 1);                    /* second end: ignored */
    fx_rec_end(r, FX_REC_SERVER, 1);
    assert_int_equal(fx_rec_payload(r), 12);
    fx_script *s = write_and_load(r, path, sizeof(path));
    /* name: rule made safe, UTC time, connection id */
    char want[512];
    snprintf(want, sizeof(want), "%s/web_1-20251126T004640Z-c7.fwxs", dir);
    assert_string_equal(path, want);
    assert_int_equal(s->rule, FX_RULE_OUTBOUND);
    assert_int_equal(s->nfilters, 2);
    assert_string_equal(s->filters[0].path, "/x/passthrough.dll");
    assert_string_equal(s->filters[1].clsid, "{C5B86DA9-D567-4E36-8A60-144A781CB066}");
    char text[80];
    fx_addr_format(&s->target, s->target_len, text, sizeof(text));
    assert_string_equal(text, "10.1.2.3:25");
    fx_addr_format(&s->client, s->client_len, text, sizeof(text));
    assert_string_equal(text, "[::1]:40000");
    assert_int_equal(s->nsteps, 4);
    assert_int_equal(s->steps[0].op, FX_STEP_CLIENT_SEND);
    assert_int_equal(s->steps[0].len, 8);
    assert_memory_equal(s->steps[0].data, "HELO x\r\n", 8);
    assert_int_equal(s->steps[1].op, FX_STEP_SERVER_SEND);
    assert_memory_equal(s->steps[1].data, "\x00\xff\"\\", 4);
    assert_int_equal(s->steps[2].op, FX_STEP_CLIENT_SHUTDOWN);
    assert_int_equal(s->steps[3].op, FX_STEP_SERVER_ABORT);
    fx_script_free(s);
    /* The same name again: a suffix, the first file is kept. */
    fx_rec_free(r);
    r = new_rec("web/1", 7, 0);
    fx_rec_end(r, FX_REC_SERVER, 0);
    char path2[512];
    s = write_and_load(r, path2, sizeof(path2));
    snprintf(want, sizeof(want), "%s/web_1-20251126T004640Z-c7-2.fwxs", dir);
    assert_string_equal(path2, want);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    fx_script_free(s);
    fx_rec_free(r);
}

static void test_lines_and_empty(void **state)
{
    char path[512];
    unsigned char big[10000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (unsigned char)(i * 7);
    fx_rec *r = new_rec("bin", 1, 0);
    for (size_t o = 0; o < sizeof(big); o += 1000)
        fx_rec_data(r, FX_REC_SERVER, big + o, 1000);
    fx_script *s = write_and_load(r, path, sizeof(path));
    /* 10000 bytes without newlines: lines of at most 4096 bytes, in order. */
    size_t total = 0;
    assert_true(s->nsteps >= 3);
    for (size_t i = 0; i < s->nsteps; i++) {
        assert_int_equal(s->steps[i].op, FX_STEP_SERVER_SEND);
        assert_true(s->steps[i].len <= 4096);
        assert_memory_equal(s->steps[i].data, big + total, s->steps[i].len);
        total += s->steps[i].len;
    }
    assert_int_equal(total, sizeof(big));
    fx_script_free(s);
    fx_rec_free(r);
    /* Nothing at all (a denied connection): still a script. */
    r = new_rec("denied", 2, 0);
    s = write_and_load(r, path, sizeof(path));
    assert_int_equal(s->nsteps, 1);
    assert_int_equal(s->steps[0].op, FX_STEP_EXPECT_CLOSED);
    fx_script_free(s);
    fx_rec_free(r);
}

static void test_cap(void **state)
{
    char path[512];
    unsigned char chunk[1000];
    memset(chunk, 0xAB, sizeof(chunk));       /* 4 script bytes per byte */
    fx_rec *r = new_rec("cap", 3, 8192);
    for (int i = 0; i < 100; i++)
        fx_rec_data(r, (enum fx_rec_side)(i & 1), chunk, sizeof(chunk));
    fx_rec_end(r, FX_REC_CLIENT, 0);
    assert_true(fx_rec_truncated(r));
    assert_true(fx_rec_payload(r) > 1000 && fx_rec_payload(r) < 2048);
    fx_script *s = write_and_load(r, path, sizeof(path));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size <= 8192);
    for (size_t i = 0; i < s->nsteps; i++)
        assert_true(s->steps[i].op != FX_STEP_CLIENT_SHUTDOWN);   /* after the cut */
    fx_script_free(s);
    FILE *f = fopen(path, "r");
    char line[512];
    int found = 0;
    while (fgets(line, sizeof(line), f))
        found |= !strncmp(line, "# TRUNCATED", 11);
    fclose(f);
    assert_true(found);
    fx_rec_free(r);
    /* A directory that is not there: an error, not a crash. */
    strcpy(dir + strlen(dir), "/none");
    r = new_rec("x", 4, 0);
    char err[512];
    assert_int_equal(fx_rec_write(r, path, sizeof(path), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/none/"));
    dir[strlen(dir) - 5] = 0;
    fx_rec_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_lines_and_empty),
        cmocka_unit_test(test_cap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
