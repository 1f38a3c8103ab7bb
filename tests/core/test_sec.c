/*
 * test_sec.c - unit tests for shim/core/fxsec: which files and directories
 * fx_path_check_safe refuses and what it says, and fx_check_ids on this
 * process. Dropping privileges itself is tested end to end
 * (tests/security.sh), as it cannot be undone inside one test process.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fxsec.h"

static char dir[64];

static void make_file(const char *path, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("x\n", f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/fxsectest.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_file_modes(void **state)
{
    char path[128], err[512], expect[512];
    (void)state;

    snprintf(path, sizeof(path), "%s/ok.dll", dir);
    make_file(path, 0644);
    assert_int_equal(fx_path_check_safe(path, "filter DLL", err, sizeof(err)), 0);
    make_file(path, 0664);      /* group-writable: allowed */
    assert_int_equal(fx_path_check_safe(path, "filter DLL", err, sizeof(err)), 0);
    make_file(path, 0646);
    assert_int_equal(fx_path_check_safe(path, "filter DLL", err, sizeof(err)), -1);
    snprintf(expect, sizeof(expect), "refusing filter DLL %s: it is writable by every user "
             "(mode 0646); fix with: chmod o-w %s", path, path);
    assert_string_equal(err, expect);
}

static void test_directories(void **state)
{
    char sub[128], path[128], link[128], err[512];
    (void)state;

    snprintf(sub, sizeof(sub), "%s/open", dir);
    snprintf(path, sizeof(path), "%s/open/f.conf", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    make_file(path, 0600);
    assert_int_equal(chmod(sub, 0777), 0);
    assert_int_equal(fx_path_check_safe(path, "configuration file", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "without the sticky bit"));
    assert_non_null(strstr(err, sub));
    /* Sticky, like /tmp: only the owner may replace the file. */
    assert_int_equal(chmod(sub, 01777), 0);
    assert_int_equal(fx_path_check_safe(path, "configuration file", err, sizeof(err)), 0);
    /* A link from a safe place into an open directory is judged by its target. */
    assert_int_equal(chmod(sub, 0777), 0);
    snprintf(link, sizeof(link), "%s/link.conf", dir);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(fx_path_check_safe(link, "configuration file", err, sizeof(err)), -1);
    assert_non_null(strstr(err, sub));
    assert_int_equal(chmod(sub, 0755), 0);
    assert_int_equal(fx_path_check_safe(link, "configuration file", err, sizeof(err)), 0);
}

static void test_missing_and_relative(void **state)
{
    char err[512], cwd[256];
    (void)state;

    assert_int_equal(fx_path_check_safe("/nonexistent/fwx.dll", "filter DLL", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot check filter DLL /nonexistent/fwx.dll"));
    assert_int_equal(fx_path_check_safe("", "filter DLL", err, sizeof(err)), -1);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    make_file("rel.dll", 0666);
    assert_int_equal(fx_path_check_safe("rel.dll", "filter DLL", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "refusing filter DLL rel.dll: it is writable by every user"));
    assert_int_equal(chdir(cwd), 0);
}

static void test_ids(void **state)
{
    char err[256];
    (void)state;

    assert_int_equal(fx_check_ids(getuid(), getgid(), err, sizeof(err)), 0);
    assert_int_equal(fx_check_ids(getuid() + 1, getgid(), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "still runs as uid"));
    assert_int_equal(fx_drop_privileges("fwx-no-such-user", err, sizeof(err)), -1);
    assert_string_equal(err, "user 'fwx-no-such-user': no such user");
    assert_int_equal(fx_drop_privileges("root", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is root"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_modes),
        cmocka_unit_test(test_directories),
        cmocka_unit_test(test_missing_and_relative),
        cmocka_unit_test(test_ids),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
