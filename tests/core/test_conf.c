/*
 * test_conf.c - unit tests for shim/core/fxconf: a full file loads with
 * the right values (also with BOM, CRLF and indentation), every kind of
 * error gives its exact "FILE:LINE: ..." message, the first error wins,
 * and the programmatic builder shares the same checks.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "fxconf.h"
#include "fxlog.h"

static char g_dir[64];
static char g_path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/fxconftestXXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    snprintf(g_path, sizeof(g_path), "%s/fwx.ini", g_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(g_path);
    rmdir(g_dir);
    return 0;
}

static void write_file(const char *text)
{
    FILE *f = fopen(g_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const fx_filter_conf *filter(const fx_config *c, const char *name)
{
    for (size_t i = 0; i < c->nfilters; i++)
        if (strcmp(c->filters[i].name, name) == 0)
            return &c->filters[i];
    fail_msg("no filter %s", name);
    return NULL;
}

static const fx_rule_conf *rule(const fx_config *c, const char *name)
{
    for (size_t i = 0; i < c->nrules; i++)
        if (strcmp(c->rules[i].name, name) == 0)
            return &c->rules[i];
    fail_msg("no rule %s", name);
    return NULL;
}

static void assert_addr(const fx_sockaddr *sa, int len, const char *expect)
{
    char buf[FX_ADDRSTRLEN];
    assert_true(fx_addr_format(sa, len, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, expect);
}

static const char good_conf[] =
    "; fwxshim configuration used by test_conf\n"
    "[host]\n"
    "workers = 4\n"
    "log-level = debug\n"
    "max-sessions = 500\n"
    "connect-timeout = 5\n"
    "idle-timeout = 0\n"
    "max-buffer = 128k\n"
    "trace = /var/log/fwx/trace.log\n"
    "poll-spin = 0\n"
    "# chain order is file order\n"
    "[filter first]\n"
    "    path = /opt/filters/a.dll\n"
    "    clsid = {4b8e9c5a-0d12-4f6b-9a3e-2c7d1f0e8b64}\n"
    "    enabled = no\n"
    "    profile = isa2000\n"
    "    setting.Mode = strict\n"
    "    setting.Ports = 21,25 ; inline comment\n"
    "\n"
    "[filter second]\n"
    "path=b.dll\n"
    "clsid=00000000-0000-0000-C000-000000000046\n"
    "\n"
    "[rule web]\n"
    "listen = 127.0.0.1:8080\n"
    "target = [::1]:80\n"
    "\n"
    "[rule out]\n"
    "type = outbound\n"
    "listen = *:3128\n"
    "secondary-only = yes\n"
    "\n"
    "[rule dns]\n"
    "listen = 127.0.0.1:5353\n"
    "target = 127.0.0.1:53\n"
    "protocol = UDP\n"
    "udp-timeout = 15\n";

static void check_good(const fx_config *c)
{
    char g[40];

    assert_int_equal(c->host.workers, 4);
    assert_int_equal(c->host.poll_spin, 0);
    assert_int_equal(c->host.log_level, FX_LOG_DEBUG);
    assert_int_equal(c->host.max_sessions, 500);
    assert_int_equal(c->host.connect_timeout, 5);
    assert_int_equal(c->host.idle_timeout, 0);
    assert_int_equal(c->host.max_buffer, 131072);
    assert_string_equal(c->host.trace, "/var/log/fwx/trace.log");

    assert_int_equal(c->nfilters, 2);
    assert_string_equal(c->filters[0].name, "first");
    assert_string_equal(c->filters[1].name, "second");
    const fx_filter_conf *f = filter(c, "first");
    assert_int_equal(f->line, 12);
    assert_string_equal(f->path, "/opt/filters/a.dll");
    assert_true(f->has_clsid);
    assert_int_equal(f->clsid.data1, 0x4b8e9c5a);
    assert_int_equal(f->clsid.data2, 0x0d12);
    assert_int_equal(f->clsid.data3, 0x4f6b);
    assert_int_equal(f->clsid.data4[0], 0x9a);
    assert_int_equal(f->clsid.data4[7], 0x64);
    fx_guid_format(&f->clsid, g, sizeof(g));
    assert_string_equal(g, "{4B8E9C5A-0D12-4F6B-9A3E-2C7D1F0E8B64}");
    assert_int_equal(f->enabled, 0);
    assert_int_equal(f->profile, FX_PROFILE_ISA2000);
    assert_int_equal(f->nsettings, 2);
    assert_string_equal(f->settings[0].name, "Mode");
    assert_string_equal(f->settings[0].value, "strict");
    assert_string_equal(f->settings[1].name, "Ports");
    assert_string_equal(f->settings[1].value, "21,25");

    f = filter(c, "second");
    assert_string_equal(f->path, "b.dll");
    fx_guid_format(&f->clsid, g, sizeof(g));
    assert_string_equal(g, "{00000000-0000-0000-C000-000000000046}");
    assert_int_equal(f->enabled, 1);
    assert_int_equal(f->profile, FX_PROFILE_AUTO);
    assert_int_equal(f->nsettings, 0);

    assert_int_equal(c->nrules, 3);
    const fx_rule_conf *r = rule(c, "web");
    assert_int_equal(r->line, 24);
    assert_int_equal(r->type, FX_RULE_PUBLISH);
    assert_int_equal(r->protocol, FX_PROTO_TCP);
    assert_int_equal(r->udp_timeout, FX_UDP_TIMEOUT_DEFAULT);
    assert_addr(&r->listen, r->listen_len, "127.0.0.1:8080");
    assert_true(r->has_target);
    assert_addr(&r->target, r->target_len, "[::1]:80");
    r = rule(c, "out");
    assert_int_equal(r->type, FX_RULE_OUTBOUND);
    assert_addr(&r->listen, r->listen_len, "0.0.0.0:3128");
    assert_false(r->has_target);
    assert_true(r->secondary_only);
    assert_false(rule(c, "web")->secondary_only);
    r = rule(c, "dns");
    assert_int_equal(r->protocol, FX_PROTO_UDP);
    assert_int_equal(r->udp_timeout, 15);
    assert_addr(&r->target, r->target_len, "127.0.0.1:53");
}

static void test_good_file(void **state)
{
    char err[512] = "";
    fx_config *c;
    (void)state;

    write_file(good_conf);
    c = fx_config_load(g_path, err, sizeof(err));
    if (c == NULL)
        fail_msg("load failed: %s", err);
    assert_string_equal(c->path, g_path);
    check_good(c);
    fx_config_free(c);
}

/* Same file written on Windows: BOM and CRLF line ends. */
static void test_good_file_bom_crlf(void **state)
{
    char err[512] = "", *dos = malloc(2 * sizeof(good_conf) + 4), *d = dos;
    fx_config *c;
    (void)state;

    memcpy(d, "\xEF\xBB\xBF", 3);
    d += 3;
    for (const char *s = good_conf; *s; s++) {
        if (*s == '\n')
            *d++ = '\r';
        *d++ = *s;
    }
    *d = '\0';
    write_file(dos);
    free(dos);
    c = fx_config_load(g_path, err, sizeof(err));
    if (c == NULL)
        fail_msg("load failed: %s", err);
    check_good(c);
    fx_config_free(c);
}

static void test_defaults(void **state)
{
    char err[512] = "";
    fx_config *c;
    (void)state;

    write_file("[rule r]\nlisten=127.0.0.1:1\ntarget=127.0.0.1:2\n");
    c = fx_config_load(g_path, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(c->host.workers, 0);
    assert_int_equal(c->host.poll_spin, 50);
    assert_int_equal(c->host.log_level, FX_LOG_INFO);
    assert_int_equal(c->host.max_sessions, 10000);
    assert_int_equal(c->host.connect_timeout, 10);
    assert_int_equal(c->host.idle_timeout, 300);
    assert_int_equal(c->host.secondary_timeout, 60);
    assert_int_equal(c->host.session_timeout, 60);
    assert_int_equal(c->host.max_buffer, 262144);
    assert_null(c->host.trace);
    assert_int_equal(c->host.max_faults, 5);
    assert_int_equal(c->host.on_disabled, FX_DISABLED_REFUSE);
    assert_int_equal(c->host.hang_timeout, 30);
    assert_int_equal(c->host.reclaim_leaks, 1);
    assert_int_equal(c->nfilters, 0);
    fx_config_free(c);
}

/* The fault-handling keys (max-faults, on-disabled-filter, hang-timeout). */
static void test_fault_keys(void **state)
{
    char err[512] = "";
    fx_config *c;
    (void)state;

    write_file("[host]\nmax-faults = 0\non-disabled-filter = Bypass\nhang-timeout = 7\n"
               "[rule r]\nlisten=127.0.0.1:1\ntarget=127.0.0.1:2\n");
    c = fx_config_load(g_path, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(c->host.max_faults, 0);
    assert_int_equal(c->host.on_disabled, FX_DISABLED_BYPASS);
    assert_int_equal(c->host.hang_timeout, 7);
    fx_config_free(c);

    write_file("[host]\nmax-faults = 1000000\non-disabled-filter = refuse\nhang-timeout = 0\n"
               "[rule r]\nlisten=127.0.0.1:1\ntarget=127.0.0.1:2\n");
    c = fx_config_load(g_path, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(c->host.max_faults, 1000000);
    assert_int_equal(c->host.on_disabled, FX_DISABLED_REFUSE);
    assert_int_equal(c->host.hang_timeout, 0);
    /* The same keys through the command-line path. */
    assert_int_equal(fx_config_set(c, "host", "max-faults", "3", err, sizeof(err)), 0);
    assert_int_equal(fx_config_set(c, "host", "on-disabled-filter", "bypass", err, sizeof(err)), 0);
    assert_int_equal(fx_config_set(c, "host", "hang-timeout", "2", err, sizeof(err)), 0);
    assert_int_equal(c->host.max_faults, 3);
    assert_int_equal(c->host.on_disabled, FX_DISABLED_BYPASS);
    assert_int_equal(c->host.hang_timeout, 2);
    assert_int_equal(fx_config_set(c, "host", "hang-timeout", "-2", err, sizeof(err)), -1);
    assert_string_equal(err, "bad value '-2' for 'hang-timeout' (expected seconds from 1 to 86400, "
                             "or 0 for no watchdog)");
    /* reclaim-leaks (HOST-900): a boolean, on by default. */
    assert_int_equal(fx_config_set(c, "host", "reclaim-leaks", "no", err, sizeof(err)), 0);
    assert_int_equal(c->host.reclaim_leaks, 0);
    assert_int_equal(fx_config_set(c, "host", "reclaim-leaks", "Yes", err, sizeof(err)), 0);
    assert_int_equal(c->host.reclaim_leaks, 1);
    assert_int_equal(fx_config_set(c, "host", "reclaim-leaks", "sometimes", err, sizeof(err)), -1);
    assert_string_equal(err, "bad value 'sometimes' for 'reclaim-leaks' (expected yes, no, true, "
                             "false, 1 or 0)");
    assert_int_equal(c->host.reclaim_leaks, 1);
    fx_config_free(c);
}

/* The control keys: control (socket path), metrics (loopback only). */
static void expect_error(const char *text, const char *expect_fmt);

static void test_control_keys(void **state)
{
    char err[512] = "";
    fx_config *c;
    (void)state;

    c = fx_config_new_empty();
    assert_non_null(c);
    assert_null(c->host.control);
    assert_int_equal(c->host.has_metrics, 0);
    fx_config_free(c);

    write_file("[host]\ncontrol = /run/x/fwx.sock\nmetrics = 127.0.0.1:9469\n"
               "[rule r]\nlisten=127.0.0.1:1\ntarget=127.0.0.1:2\n");
    c = fx_config_load(g_path, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(c->host.control, "/run/x/fwx.sock");
    assert_int_equal(c->host.has_metrics, 1);
    assert_int_equal(c->host.metrics_len, 16);
    assert_int_equal(fx_config_set(c, "host", "metrics", "[::1]:9469", err, sizeof(err)), 0);
    assert_int_equal(c->host.metrics_len, 28);
    assert_int_equal(fx_config_set(c, "host", "metrics", "127.1.2.3:0", err, sizeof(err)), 0);
    assert_int_equal(fx_config_set(c, "host", "control", "/tmp/other.sock", err, sizeof(err)), 0);
    assert_string_equal(c->host.control, "/tmp/other.sock");
    assert_int_equal(fx_config_set(c, "host", "metrics", "0.0.0.0:9469", err, sizeof(err)), -1);
    assert_string_equal(err, "bad value '0.0.0.0:9469' for 'metrics' (the metrics port has no "
                             "authentication: it must be a loopback address, 127.0.0.0/8 or [::1], "
                             "e.g. 127.0.0.1:9469)");
    assert_int_equal(fx_config_set(c, "host", "metrics", "*:9469", err, sizeof(err)), -1);
    assert_int_equal(fx_config_set(c, "host", "metrics", "[::]:9469", err, sizeof(err)), -1);
    assert_int_equal(fx_config_set(c, "host", "metrics", "192.0.2.1:9469", err, sizeof(err)), -1);
    assert_int_equal(fx_config_set(c, "host", "metrics", "localhost:9469", err, sizeof(err)), -1);
    assert_string_equal(err, "bad value 'localhost:9469' for 'metrics' (expected a loopback "
                             "address and port, e.g. 127.0.0.1:9469)");
    assert_int_equal(fx_config_set(c, "host", "control", "relative.sock", err, sizeof(err)), -1);
    assert_string_equal(err, "bad value 'relative.sock' for 'control' (expected an absolute path "
                             "of at most 107 bytes for the control socket)");
    fx_config_free(c);

    expect_error("[host]\nmetrics = 10.0.0.1:9469\n",
                 "%s:2: bad value '10.0.0.1:9469' for 'metrics' (the metrics port has no "
                 "authentication: it must be a loopback address, 127.0.0.0/8 or [::1], "
                 "e.g. 127.0.0.1:9469)");
    expect_error("[host]\ncontrol = /a\ncontrol = /b\n",
                 "%s:3: duplicate key 'control' (first set on line 2)");
}

/* expect uses "%1$s" for the file path, as many times as needed. */
static void expect_error(const char *text, const char *expect_fmt)
{
    char err[512] = "", expect[768];
    fx_config *c;

    write_file(text);
    c = fx_config_load(g_path, err, sizeof(err));
    if (c != NULL) {
        fx_config_free(c);
        fail_msg("loaded, but expected: %s", expect_fmt);
    }
    snprintf(expect, sizeof(expect), expect_fmt, g_path);
    assert_string_equal(err, expect);
}

#define RULE_OK "[rule ok]\nlisten = 127.0.0.1:1\ntarget = 127.0.0.1:2\n"

static void test_err_unknown_section(void **state)
{
    (void)state;
    expect_error("[hots]\nworkers = 1\n",
                 "%s:1: unknown section [hots] (did you mean [host]?)");
    expect_error(RULE_OK "[fliter f]\npath = x.dll\n",
                 "%s:4: unknown section [fliter f] (did you mean [filter f]?)");
    expect_error("[frobnicate x]\n",
                 "%s:1: unknown section [frobnicate x] (expected [host], [filter NAME], [rule NAME] or [abi])");
    expect_error("[rule]\n", "%s:1: section [rule] needs a name, e.g. [rule web]");
    expect_error("[filter   ]\n", "%s:1: section [filter] needs a name, e.g. [filter web]");
    expect_error("[host main]\n", "%s:1: section [host] takes no name (found [host main])");
    expect_error("[host\nworkers = 1\n", "%s:1: missing ']' in section header");
}

static void test_err_unknown_key(void **state)
{
    (void)state;
    expect_error("[rule web]\nlisten = 127.0.0.1:1\ntaget = 127.0.0.1:2\n",
                 "%s:3: unknown key 'taget' in [rule web] (did you mean 'target'?)");
    expect_error("[host]\nloglevel = info\n",
                 "%s:2: unknown key 'loglevel' in [host] (did you mean 'log-level'?)");
    expect_error("[host]\nfoo = 1\n",
                 "%s:2: unknown key 'foo' in [host] (known keys: workers, log-level, max-sessions, "
                 "connect-timeout, idle-timeout, max-buffer, trace, max-faults, on-disabled-filter, "
                 "hang-timeout, control, metrics, record, record-max-bytes, user, secondary-timeout, "
                 "restart-limit, restart-delay, reload-drain, session-timeout, reclaim-leaks, poll-spin)");
    expect_error("[host]\nmax-fault = 3\n",
                 "%s:2: unknown key 'max-fault' in [host] (did you mean 'max-faults'?)");
    expect_error("[filter f]\npath = a.dll\nsettings.Mode = x\n",
                 "%s:3: unknown key 'settings.Mode' in [filter f] (did you mean 'setting.Mode'?)");
    expect_error("[filter f]\npath = a.dll\nsetting. = x\n",
                 "%s:3: empty setting name in 'setting.' (expected setting.NAME = VALUE)");
    expect_error("workers = 1\n[host]\n",
                 "%s:1: key 'workers' is outside any section (put it under [host], [filter NAME], [rule NAME] or [abi])");
}

/* [host] user, and the same text parsed from memory (fx_config_parse, what
 * the fuzz harness drives) giving the same model and the same messages. */
static void test_user_and_parse(void **state)
{
    static const char ok[] = "[host]\nuser = fwxshim\n" RULE_OK;
    static const char bad[] = "[host]\nuser = x:y\n" RULE_OK;
    char err[512] = "";
    fx_config *c;
    (void)state;

    write_file(ok);
    c = fx_config_load(g_path, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(c->host.user, "fwxshim");
    fx_config_free(c);
    c = fx_config_parse("mem.conf", ok, sizeof(ok) - 1, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(c->host.user, "fwxshim");
    assert_int_equal(c->nrules, 1);
    fx_config_free(c);
    c = fx_config_parse("mem.conf", bad, sizeof(bad) - 1, err, sizeof(err));
    assert_null(c);
    assert_string_equal(err, "mem.conf:2: bad value 'x:y' for 'user' (expected a user name to run as "
                        "after binding (e.g. fwxshim))");
    /* Empty input: no rules, said like a file's. */
    c = fx_config_parse("empty.conf", "", 0, err, sizeof(err));
    assert_null(c);
    assert_non_null(strstr(err, "no rules"));
    /* Not NUL-terminated: only len bytes are read. */
    c = fx_config_parse("cut.conf", ok, sizeof(ok) - 1 - strlen(RULE_OK), err, sizeof(err));
    assert_null(c);
    assert_non_null(strstr(err, "no rules"));
}

static void test_err_bad_values(void **state)
{
    (void)state;
    expect_error("[host]\nworkers = 65\n",
                 "%s:2: bad value '65' for 'workers' (expected a number from 1 to 64, or 0 for one per CPU core)");
    expect_error("[host]\nworkers = -1\n",
                 "%s:2: bad value '-1' for 'workers' (expected a number from 1 to 64, or 0 for one per CPU core)");
    expect_error("[host]\npoll-spin = 1001\n",
                 "%s:2: bad value '1001' for 'poll-spin' (expected microseconds from 0 to 1000)");
    expect_error("[host]\nlog-level = loud\n",
                 "%s:2: bad value 'loud' for 'log-level' (expected error, warn, notice, info or debug)");
    expect_error("[host]\nmax-sessions = 0\n",
                 "%s:2: bad value '0' for 'max-sessions' (expected a number from 1 to 1000000)");
    expect_error("[host]\nconnect-timeout = 10s\n",
                 "%s:2: bad value '10s' for 'connect-timeout' (expected seconds from 1 to 3600)");
    expect_error("[host]\nidle-timeout = 99999999999999999999999\n",
                 "%s:2: bad value '99999999999999999999999' for 'idle-timeout' (expected seconds from 1 to 604800, or 0 for never)");
    expect_error("[host]\nmax-buffer = 1k\n",
                 "%s:2: bad value '1k' for 'max-buffer' (expected bytes from 4096 to 64m, optionally with suffix k or m)");
    expect_error("[host]\nmax-buffer = 65m\n",
                 "%s:2: bad value '65m' for 'max-buffer' (expected bytes from 4096 to 64m, optionally with suffix k or m)");
    expect_error("[host]\ntrace =\n", "%s:2: bad value '' for 'trace' (expected a file path)");
    expect_error("[host]\nmax-faults = 1000001\n",
                 "%s:2: bad value '1000001' for 'max-faults' (expected a number from 1 to 1000000, or 0 for never disabling)");
    expect_error("[host]\nmax-faults = few\n",
                 "%s:2: bad value 'few' for 'max-faults' (expected a number from 1 to 1000000, or 0 for never disabling)");
    expect_error("[host]\non-disabled-filter = ignore\n",
                 "%s:2: bad value 'ignore' for 'on-disabled-filter' (expected refuse or bypass)");
    expect_error("[host]\nuser = a b\n",
                 "%s:2: bad value 'a b' for 'user' (expected a user name to run as after binding (e.g. fwxshim))");
    expect_error("[host]\nuser =\n",
                 "%s:2: bad value '' for 'user' (expected a user name to run as after binding (e.g. fwxshim))");
    expect_error("[host]\nhang-timeout = 86401\n",
                 "%s:2: bad value '86401' for 'hang-timeout' (expected seconds from 1 to 86400, or 0 for no watchdog)");
    expect_error("[host]\nhang-timeout = 3\nhang-timeout = 4\n",
                 "%s:3: duplicate key 'hang-timeout' (first set on line 2)");
    expect_error("[filter f]\npath = a.dll\nclsid = {1234}\n",
                 "%s:3: bad value '{1234}' for 'clsid' (expected a GUID like {4B8E9C5A-0D12-4F6B-9A3E-2C7D1F0E8B64})");
    expect_error("[filter f]\npath = a.dll\nclsid = {4b8e9c5a-0d12-4f6b-9a3e-2c7d1f0e8b64\n",
                 "%s:3: bad value '{4b8e9c5a-0d12-4f6b-9a3e-2c7d1f0e8b64' for 'clsid' (expected a GUID like {4B8E9C5A-0D12-4F6B-9A3E-2C7D1F0E8B64})");
    expect_error("[filter f]\npath = a.dll\nenabled = maybe\n",
                 "%s:3: bad value 'maybe' for 'enabled' (expected yes, no, true, false, 1 or 0)");
    expect_error("[filter f]\npath = a.dll\nprofile = isa2004\n",
                 "%s:3: bad value 'isa2004' for 'profile' (expected isa2000 or tmg)");
    expect_error("[filter f]\npath =\n",
                 "%s:2: bad value '' for 'path' (expected the path of the filter DLL)");
    expect_error("[rule r]\ntype = reverse\n",
                 "%s:2: bad value 'reverse' for 'type' (expected publish or outbound)");
    expect_error("[rule r]\nprotocol = sctp\n",
                 "%s:2: bad value 'sctp' for 'protocol' (expected tcp or udp)");
    expect_error("[rule r]\nudp-timeout = 0\n",
                 "%s:2: bad value '0' for 'udp-timeout' (expected seconds from 1 to 86400)");
    expect_error("[rule r]\nudp-timeout = 86401\n",
                 "%s:2: bad value '86401' for 'udp-timeout' (expected seconds from 1 to 86400)");
    expect_error("[rule r]\nlisten = 127.0.0.1\n",
                 "%s:2: bad value for 'listen': missing port in '127.0.0.1' (expected ADDR:PORT, e.g. 127.0.0.1:8080, [::1]:80 or *:80)");
    expect_error("[rule r]\nlisten = 127.0.0.1:80\ntarget = web:80\n",
                 "%s:3: bad value for 'target': bad IPv4 address 'web' in 'web:80' (expected a dotted quad like 127.0.0.1; names are not resolved)");
    expect_error("[rule r]\nlisten = 127.0.0.1:80\ntarget = 127.0.0.1:0\n",
                 "%s:3: bad value for 'target': port 0 in '127.0.0.1:0' is not a destination");
}

static void test_err_missing_required(void **state)
{
    (void)state;
    expect_error("[host]\nworkers = 1\n\n[rule web]\nlisten = 127.0.0.1:80\n",
                 "%s:4: [rule web]: missing required key 'target' (a publish rule needs one)");
    expect_error("[rule web]\ntarget = 127.0.0.1:80\n",
                 "%s:1: [rule web]: missing required key 'listen'");
    expect_error(RULE_OK "\n[filter f]\nclsid = {4b8e9c5a-0d12-4f6b-9a3e-2c7d1f0e8b64}\n",
                 "%s:5: [filter f]: missing required key 'path'");
    /* An empty section is still seen, with its line. */
    expect_error(RULE_OK "[rule empty]\n",
                 "%s:4: [rule empty]: missing required key 'listen'");
    expect_error("[rule p]\nlisten = *:21\ntarget = 127.0.0.1:21\nsecondary-only = yes\n",
                 "%s:4: [rule p]: 'secondary-only' applies to outbound rules only");
    expect_error("[rule o]\ntype = outbound\nlisten = *:3128\nsecondary-only = maybe\n",
                 "%s:4: bad value 'maybe' for 'secondary-only' (expected yes or no)");
    expect_error("[host]\nsession-timeout = -1\n",
                 "%s:2: bad value '-1' for 'session-timeout' (expected seconds from 1 to 604800, or 0 for never)");
    expect_error("[host]\nsecondary-timeout = 0\n",
                 "%s:2: bad value '0' for 'secondary-timeout' (expected seconds from 1 to 86400)");
    expect_error("[rule o]\ntype = outbound\nlisten = *:3128\ntarget = 127.0.0.1:80\n",
                 "%s:4: [rule o]: 'target' is not allowed in an outbound rule (it goes to the original destination)");
    /* The type may come after the target. */
    expect_error("[rule o]\nlisten = *:3128\ntarget = 127.0.0.1:80\ntype = outbound\n",
                 "%s:3: [rule o]: 'target' is not allowed in an outbound rule (it goes to the original destination)");
    expect_error("[host]\nworkers = 2\n",
                 "%s: no rules: add a [rule NAME] section with 'listen' and 'target'");
    expect_error("", "%s: no rules: add a [rule NAME] section with 'listen' and 'target'");
}

static void test_err_duplicates(void **state)
{
    (void)state;
    expect_error(RULE_OK "[rule ok]\n",
                 "%s:4: duplicate section [rule ok] (first defined on line 1)");
    expect_error("[filter f]\npath = a\n[filter g]\npath = b\n[filter f]\n",
                 "%s:5: duplicate section [filter f] (first defined on line 1)");
    expect_error("[host]\n[host]\n", "%s:2: duplicate section [host] (first defined on line 1)");
    expect_error("[rule r]\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:2\n",
                 "%s:3: duplicate key 'listen' (first set on line 2)");
    expect_error("[filter f]\npath = a\nsetting.x = 1\nsetting.x = 2\n",
                 "%s:4: duplicate key 'setting.x' (first set on line 3)");
    expect_error(RULE_OK "[rule b]\nlisten = 127.0.0.1:1\ntarget = 127.0.0.1:3\n",
                 "%s:5: [rule b]: listen address tcp 127.0.0.1:1 is already used by [rule ok]");
}

static void test_err_syntax_and_order(void **state)
{
    char longline[400], text[600];
    (void)state;

    expect_error("[host]\nworkers\n", "%s:2: syntax error (expected [section] or key = value)");
    /* First error wins, whichever kind it is. */
    expect_error("[host]\nworkers = 99\nbogus line\n",
                 "%s:2: bad value '99' for 'workers' (expected a number from 1 to 64, or 0 for one per CPU core)");
    expect_error("[host]\nbogus line\nworkers = 99\n",
                 "%s:2: syntax error (expected [section] or key = value)");
    /* An indented line is a key of its own, never a continuation. */
    expect_error("[host]\n  workers = 2\n  bogus\n",
                 "%s:3: syntax error (expected [section] or key = value)");

    memset(longline, 'a', sizeof(longline) - 1);
    longline[sizeof(longline) - 1] = '\0';
    snprintf(text, sizeof(text), "[filter f]\npath = %s\n", longline);
    char expect[128];
    snprintf(expect, sizeof(expect), "%%s:2: line too long (at most %d characters)", ini_max_line - 3);
    expect_error(text, expect);

    {
        char err[256];
        assert_null(fx_config_load("/nonexistent/fwx.ini", err, sizeof(err)));
        assert_string_equal(err, "cannot open /nonexistent/fwx.ini: No such file or directory");
    }
    {
        static const char nul[] = "[host]\nwork\0ers = 1\n";
        FILE *f = fopen(g_path, "w");
        fwrite(nul, 1, sizeof(nul) - 1, f);
        fclose(f);
        char err[256], exp[256];
        assert_null(fx_config_load(g_path, err, sizeof(err)));
        snprintf(exp, sizeof(exp), "%s:2: NUL byte in line (is this a text file?)", g_path);
        assert_string_equal(err, exp);
    }
}

/* ---- building a config in code (fwxhost's one-rule command line) ------ */

static void test_programmatic(void **state)
{
    char err[256] = "";
    fx_config *c = fx_config_new_empty();
    (void)state;

    assert_non_null(c);
    assert_int_equal(fx_config_check(c, err, sizeof(err)), -1);
    assert_string_equal(err, "no rules: add a [rule NAME] section with 'listen' and 'target'");

    assert_int_equal(fx_config_add_filter(c, "f1", "/opt/a.dll", "{4b8e9c5a-0d12-4f6b-9a3e-2c7d1f0e8b64}",
                                          err, sizeof(err)), 0);
    assert_int_equal(fx_config_add_filter(c, "f2", "/opt/b.dll", NULL, err, sizeof(err)), 0);
    assert_int_equal(fx_config_add_filter(c, "f3", "/opt/c.dll", "nope", err, sizeof(err)), -1);
    assert_string_equal(err, "bad value 'nope' for 'clsid' (expected a GUID like {4B8E9C5A-0D12-4F6B-9A3E-2C7D1F0E8B64})");

    assert_int_equal(fx_config_add_rule(c, "cli", NULL, "127.0.0.1:8080", NULL, NULL, err, sizeof(err)), 0);
    /* f3 was created (with its path) by the call that failed on clsid. */
    assert_int_equal(fx_config_set(c, "filter f4", "enabled", "no", err, sizeof(err)), 0);
    assert_int_equal(fx_config_check(c, err, sizeof(err)), -1);
    assert_string_equal(err, "[filter f4]: missing required key 'path'");
    assert_int_equal(fx_config_set(c, "filter f4", "path", "/opt/d.dll", err, sizeof(err)), 0);
    assert_int_equal(fx_config_check(c, err, sizeof(err)), -1);
    assert_string_equal(err, "[rule cli]: missing required key 'target' (a publish rule needs one)");
    assert_int_equal(fx_config_add_rule(c, "cli", NULL, "127.0.0.1:8080", "127.0.0.1:80", "udp",
                                        err, sizeof(err)), 0);
    assert_int_equal(fx_config_check(c, err, sizeof(err)), 0);

    assert_int_equal(fx_config_add_rule(c, "bad", NULL, "nowhere", "127.0.0.1:80", NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "bad value for 'listen': missing port in 'nowhere' (expected ADDR:PORT, e.g. 127.0.0.1:8080, [::1]:80 or *:80)");

    assert_int_equal(fx_config_set(c, "host", "workers", "2", err, sizeof(err)), 0);
    assert_int_equal(fx_config_set(c, "host", "wrokers", "2", err, sizeof(err)), -1);
    assert_string_equal(err, "unknown key 'wrokers' in [host] (did you mean 'workers'?)");
    assert_int_equal(fx_config_set(c, "hots", "workers", "2", err, sizeof(err)), -1);
    assert_string_equal(err, "unknown section [hots] (did you mean [host]?)");
    /* Setting twice in code: last wins (command-line semantics). */
    assert_int_equal(fx_config_set(c, "filter f1", "setting.a", "1", err, sizeof(err)), 0);
    assert_int_equal(fx_config_set(c, "filter f1", "setting.a", "2", err, sizeof(err)), 0);

    assert_int_equal(c->host.workers, 2);
    assert_int_equal(c->nfilters, 4);
    assert_string_equal(c->filters[2].path, "/opt/c.dll");
    assert_int_equal(c->filters[3].enabled, 0);
    assert_string_equal(c->filters[0].path, "/opt/a.dll");
    assert_true(c->filters[0].has_clsid);
    assert_false(c->filters[1].has_clsid);
    assert_int_equal(c->filters[0].line, 0);
    assert_int_equal(c->filters[0].nsettings, 1);
    assert_string_equal(c->filters[0].settings[0].value, "2");
    assert_int_equal(c->nrules, 2);   /* "bad" was created before failing */
    assert_int_equal(c->rules[0].protocol, FX_PROTO_UDP);
    assert_addr(&c->rules[0].listen, c->rules[0].listen_len, "127.0.0.1:8080");
    assert_addr(&c->rules[0].target, c->rules[0].target_len, "127.0.0.1:80");
    fx_config_free(c);
    fx_config_free(NULL);
}

static void test_guid(void **state)
{
    fx_guid g;
    char buf[40];
    (void)state;

    assert_int_equal(fx_guid_parse("{00020400-0000-0000-C000-000000000046}", &g), 0);
    assert_int_equal(g.data1, 0x00020400);
    assert_int_equal(g.data4[0], 0xC0);
    assert_int_equal(g.data4[7], 0x46);
    fx_guid_format(&g, buf, sizeof(buf));
    assert_string_equal(buf, "{00020400-0000-0000-C000-000000000046}");
    assert_int_equal(fx_guid_parse("00020400-0000-0000-c000-000000000046", &g), 0);
    assert_int_equal(fx_guid_parse("{00020400-0000-0000-C000-000000000046", &g), -1);
    assert_int_equal(fx_guid_parse("00020400-0000-0000-C000-000000000046}", &g), -1);
    assert_int_equal(fx_guid_parse("{00020400-0000-0000-C000-0000000000467}", &g), -1);
    assert_int_equal(fx_guid_parse("{00020400-0000-0000-C000-00000000004}", &g), -1);
    assert_int_equal(fx_guid_parse("{0002040G-0000-0000-C000-000000000046}", &g), -1);
    assert_int_equal(fx_guid_parse("{00020400+0000-0000-C000-000000000046}", &g), -1);
    assert_int_equal(fx_guid_parse("", &g), -1);
    assert_int_equal(fx_guid_parse(NULL, &g), -1);
    assert_string_equal(fx_profile_name(FX_PROFILE_TMG), "tmg");
    assert_string_equal(fx_profile_name(FX_PROFILE_ISA2000), "isa2000");
    assert_string_equal(fx_profile_name(FX_PROFILE_AUTO), "auto");
}


/* The supervisor's keys (HOST-501, HOST-502). */
static void test_supervisor_keys(void **state)
{
    char err[512] = "";
    fx_config *c;
    (void)state;

    c = fx_config_new_empty();
    assert_non_null(c);
    assert_int_equal(c->host.restart_limit, 5);
    assert_int_equal(c->host.restart_delay, 1);
    assert_int_equal(c->host.reload_drain, 300);
    assert_int_equal(fx_config_set(c, "host", "restart-limit", "0", err, sizeof(err)), 0);
    assert_int_equal(c->host.restart_limit, 0);
    assert_int_equal(fx_config_set(c, "host", "restart-delay", "0", err, sizeof(err)), 0);
    assert_int_equal(c->host.restart_delay, 0);
    assert_int_equal(fx_config_set(c, "host", "reload-drain", "86400", err, sizeof(err)), 0);
    assert_int_equal(c->host.reload_drain, 86400);
    assert_int_equal(fx_config_set(c, "host", "restart-limit", "1001", err, sizeof(err)), -1);
    assert_string_equal(err, "bad value '1001' for 'restart-limit' (expected restarts per minute "
                             "from 1 to 1000, or 0 for never restarting the worker)");
    assert_int_equal(fx_config_set(c, "host", "restart-delay", "301", err, sizeof(err)), -1);
    assert_int_equal(fx_config_set(c, "host", "reload-drain", "-1", err, sizeof(err)), -1);
    fx_config_free(c);
    expect_error("[host]\nrestart-delay = soon\n" RULE_OK,
                 "%s:2: bad value 'soon' for 'restart-delay' (expected seconds from 0 to 300)");
}

/* [abi]: names, values, where they were set; its own errors (more in tests/abi.sh). */
static void test_abi_section(void **state)
{
    char err[512] = "";
    fx_config *c;
    (void)state;

    write_file(RULE_OK "[abi]\nIID_IFWXFilter = {0BADF00D-1111-2222-3333-444455556666}\n"
               "FWX_FLAG_TIMEOUT = 0x40\n\n[abi]\nfwxSourceNAT = 2147483648\n");
    c = fx_config_load(g_path, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(c->nabi, 3);
    assert_string_equal(c->abi[0].name, "IID_IFWXFilter");
    assert_true(c->abi[0].is_guid);
    assert_int_equal(c->abi[0].guid.data1, 0x0BADF00D);
    assert_int_equal(c->abi[0].guid.data4[7], 0x66);
    assert_int_equal(c->abi[0].line, 5);
    assert_string_equal(c->abi[0].file, g_path);
    assert_false(c->abi[1].is_guid);
    assert_int_equal(c->abi[1].value, 0x40);
    assert_int_equal(c->abi[2].value, 0x80000000u);
    assert_int_equal(c->abi[2].line, 9);
    fx_config_free(c);

    expect_error(RULE_OK "[abi x]\n", "%s:4: section [abi] takes no name (found [abi x])");
    expect_error(RULE_OK "[abi]\nFWX_FLAG_TIMEOUT = -1\n",
                 "%s:5: FWX_FLAG_TIMEOUT: '-1' is not a 32-bit number (decimal, or hex with 0x)");
    expect_error(RULE_OK "[abi]\nFWX_FLAG_TIMEOUT = 1\nFWX_FLAG_TIMEOUT = 2\n",
                 "%s:6: duplicate key 'FWX_FLAG_TIMEOUT' (first set on line 5)");
    expect_error(RULE_OK "[abi]\nFWX_FLAG_TIMEOUT = 1\n[abi]\nFWX_FLAG_TIMEOUT = 2\n",
                 "%1$s:7: FWX_FLAG_TIMEOUT is already set (at %1$s:5)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_good_file_bom_crlf),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_fault_keys),
        cmocka_unit_test(test_err_unknown_section),
        cmocka_unit_test(test_err_unknown_key),
        cmocka_unit_test(test_abi_section),
        cmocka_unit_test(test_err_bad_values),
        cmocka_unit_test(test_err_missing_required),
        cmocka_unit_test(test_err_duplicates),
        cmocka_unit_test(test_err_syntax_and_order),
        cmocka_unit_test(test_programmatic),
        cmocka_unit_test(test_user_and_parse),
        cmocka_unit_test(test_control_keys),
        cmocka_unit_test(test_supervisor_keys),
        cmocka_unit_test(test_guid),
    };
    return cmocka_run_group_tests_name("fxconf", tests, setup, teardown);
}
