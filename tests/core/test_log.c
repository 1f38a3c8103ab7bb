/*
 * test_log.c - unit tests for shim/core/fxlog: line format, syslog prefix,
 * level filtering, long messages, errno preservation and whole lines under
 * concurrent writers.  stderr is redirected to a temporary file around each
 * logging call and restored before any assertion, so cmocka's own output
 * is never captured.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
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

#include "fxlog.h"

static int saved_stderr = -1;
static int capture_fd = -1;

static void capture_begin(void)
{
    char path[] = "/tmp/fxlogtestXXXXXX";
    fflush(stderr);
    capture_fd = mkstemp(path);
    assert_true(capture_fd >= 0);
    unlink(path);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_int_equal(dup2(capture_fd, STDERR_FILENO), STDERR_FILENO);
}

/* Returns what was logged (caller frees). */
static char *capture_end(void)
{
    struct stat st;
    char *buf;
    ssize_t n;

    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    assert_int_equal(fstat(capture_fd, &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    n = pread(capture_fd, buf, (size_t)st.st_size, 0);
    assert_int_equal(n, st.st_size);
    buf[n] = '\0';
    close(capture_fd);
    return buf;
}

static void test_level_parse(void **state)
{
    (void)state;
    assert_int_equal(fx_log_level_parse("error"), FX_LOG_ERROR);
    assert_int_equal(fx_log_level_parse("WARN"), FX_LOG_WARN);
    assert_int_equal(fx_log_level_parse("warning"), FX_LOG_WARN);
    assert_int_equal(fx_log_level_parse("notice"), FX_LOG_NOTICE);
    assert_int_equal(fx_log_level_parse("Info"), FX_LOG_INFO);
    assert_int_equal(fx_log_level_parse("debug"), FX_LOG_DEBUG);
    assert_int_equal(fx_log_level_parse("verbose"), -1);
    assert_int_equal(fx_log_level_parse(""), -1);
    assert_int_equal(fx_log_level_parse(NULL), -1);
    assert_string_equal(fx_log_level_name(FX_LOG_NOTICE), "NOTICE");
    assert_string_equal(fx_log_level_name(42), "?");
    /* Levels are the syslog priorities, which the "<N>" prefix relies on. */
    assert_int_equal(FX_LOG_ERROR, 3);
    assert_int_equal(FX_LOG_DEBUG, 7);
}

static void test_format_plain_and_syslog(void **state)
{
    char expect[256];
    char *out;
    (void)state;

    fx_log_init("/usr/lib/fwxshim/fwxtest", FX_LOG_INFO);
    fx_log_set_syslog_prefix(0);
    capture_begin();
    fx_log(FX_LOG_WARN, "hello %d", 42);
    fx_log_set_syslog_prefix(1);
    fx_log(FX_LOG_ERROR, "with prefix %s", "yes");
    out = capture_end();

    snprintf(expect, sizeof(expect),
             "fwxtest[%ld]: WARN: hello 42\n<3>fwxtest[%ld]: ERROR: with prefix yes\n",
             (long)getpid(), (long)getpid());
    assert_string_equal(out, expect);
    free(out);
}

static void test_prefix_default_not_a_tty(void **state)
{
    char expect[128];
    char *out;
    (void)state;

    /* stderr is a file here, not a terminal: the prefix must default on. */
    capture_begin();
    fx_log_init("fwxtest", FX_LOG_NOTICE);
    fx_log(FX_LOG_NOTICE, "ready");
    out = capture_end();
    snprintf(expect, sizeof(expect), "<5>fwxtest[%ld]: NOTICE: ready\n", (long)getpid());
    assert_string_equal(out, expect);
    free(out);
}

static void test_level_filter(void **state)
{
    char *out;
    (void)state;

    fx_log_init("fwxtest", FX_LOG_NOTICE);
    fx_log_set_syslog_prefix(0);
    assert_true(fx_log_enabled(FX_LOG_ERROR));
    assert_true(fx_log_enabled(FX_LOG_NOTICE));
    assert_false(fx_log_enabled(FX_LOG_INFO));
    capture_begin();
    fx_log(FX_LOG_INFO, "hidden info");
    fx_log(FX_LOG_DEBUG, "hidden debug");
    fx_log(FX_LOG_NOTICE, "shown");
    fx_log_set_level(FX_LOG_DEBUG);
    fx_log(FX_LOG_DEBUG, "now shown");
    out = capture_end();
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, "NOTICE: shown\n"));
    assert_non_null(strstr(out, "DEBUG: now shown\n"));
    assert_int_equal(fx_log_get_level(), FX_LOG_DEBUG);
    free(out);

    /* Out-of-range levels are clamped, not ignored. */
    fx_log_set_level(99);
    assert_int_equal(fx_log_get_level(), FX_LOG_DEBUG);
    fx_log_set_level(0);
    assert_int_equal(fx_log_get_level(), FX_LOG_ERROR);
}

static void test_trailing_newline_and_errno(void **state)
{
    char *out;
    (void)state;

    fx_log_init("fwxtest", FX_LOG_INFO);
    fx_log_set_syslog_prefix(0);
    capture_begin();
    errno = ECONNRESET;
    fx_log(FX_LOG_INFO, "peer: %m\n");
    int e = errno;
    out = capture_end();
    assert_int_equal(e, ECONNRESET);
    assert_non_null(strstr(out, "INFO: peer: Connection reset by peer\n"));
    /* Exactly one newline at the end. */
    assert_int_not_equal(out[strlen(out) - 2], '\n');
    free(out);
}

static void check_long(size_t n)
{
    char *msg = malloc(n + 1), *out, *p;
    for (size_t i = 0; i < n; i++)
        msg[i] = (char)('a' + i % 26);
    msg[n] = '\0';
    capture_begin();
    fx_log(FX_LOG_ERROR, "%s", msg);
    out = capture_end();
    p = strstr(out, "ERROR: ");
    assert_non_null(p);
    p += 7;
    assert_int_equal(strlen(p), n + 1);
    assert_memory_equal(p, msg, n);
    assert_int_equal(p[n], '\n');
    free(out);
    free(msg);
}

static void test_long_messages_whole(void **state)
{
    (void)state;
    fx_log_init("fwxtest", FX_LOG_INFO);
    fx_log_set_syslog_prefix(1);
    check_long(4095);
    check_long(4096);
    check_long(5000);
    check_long(200000);
}

#define NTHREADS 8
#define NLINES 400

static void *log_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    char pad[300];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 0; i < NLINES; i++)
        fx_log(FX_LOG_INFO, "thread %d line %d %s", t, i, pad + (i % 290));
    return NULL;
}

static void test_threads_whole_lines(void **state)
{
    pthread_t th[NTHREADS];
    int seen[NTHREADS] = { 0 };
    char prefix[64], *out, *line, *save = NULL;
    int total = 0;
    (void)state;

    fx_log_init("fwxtest", FX_LOG_INFO);
    fx_log_set_syslog_prefix(1);
    snprintf(prefix, sizeof(prefix), "<6>fwxtest[%ld]: INFO: thread ", (long)getpid());
    capture_begin();
    for (int t = 0; t < NTHREADS; t++)
        pthread_create(&th[t], NULL, log_thread, (void *)(intptr_t)t);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    out = capture_end();

    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int t, i, n = 0;
        assert_memory_equal(line, prefix, strlen(prefix));
        assert_int_equal(sscanf(line + strlen(prefix), "%d line %d %n", &t, &i, &n), 2);
        assert_true(t >= 0 && t < NTHREADS);
        /* Lines arrive in order per thread and none is cut or merged. */
        assert_int_equal(i, seen[t]);
        assert_int_equal(strlen(line + strlen(prefix) + n), 299 - (size_t)(i % 290));
        seen[t]++;
        total++;
    }
    assert_int_equal(total, NTHREADS * NLINES);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_format_plain_and_syslog),
        cmocka_unit_test(test_prefix_default_not_a_tty),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_trailing_newline_and_errno),
        cmocka_unit_test(test_long_messages_whole),
        cmocka_unit_test(test_threads_whole_lines),
    };
    return cmocka_run_group_tests_name("fxlog", tests, NULL, NULL);
}
