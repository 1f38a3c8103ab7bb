/*
 * test_script.c - unit tests for shim/core/fxscript (the fwxreplay script
 * parser, escapes, line diff) and the pure parts of fxreplay (chunking,
 * golden format, and the driver against an in-process relay thread).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "fxnet.h"
#include "fxreplay.h"
#include "fxscript.h"

static fx_script *parse(const char *text, char *err, size_t errlen)
{
    return fx_script_parse("t.fwxs", "/base", text, strlen(text), err, errlen);
}

static void expect_error(const char *text, const char *msg)
{
    char err[512];
    fx_script *s = parse(text, err, sizeof(err));
    if (s)
        fail_msg("parsed, expected error \"%s\"", msg);
    if (strcmp(err, msg))
        fail_msg("got  \"%s\"\nwant \"%s\"", err, msg);
}

/* UDP scripts: datagrams with and without addresses parse, print and
 * parse back to the same model; bad forms give FILE:LINE:COL errors. */
static void test_udp(void **state)
{
    char err[512];
    const char *text =
        "protocol udp\n"
        "target 10.0.0.53:53\n"
        "client-datagram: \"\\x12\\x34query\"\n"
        "server-datagram: from 10.0.0.53:53 to 192.0.2.10:5353 \"answer\" \"\\0\"\n"
        "pause 5\n"
        "client-datagram: to [2001:db8::1]:53 \"\"\n";
    fx_script *s = parse(text, err, sizeof(err));
    if (!s)
        fail_msg("%s", err);
    assert_int_equal(s->protocol, FX_PROTO_UDP);
    assert_int_equal(s->nsteps, 4);
    assert_int_equal(s->steps[0].op, FX_STEP_CLIENT_DGRAM);
    assert_int_equal(s->steps[0].from_len, 0);
    assert_memory_equal(s->steps[0].data, "\x12\x34query", 7);
    assert_int_equal(s->steps[1].op, FX_STEP_SERVER_DGRAM);
    assert_int_equal(s->steps[1].len, 7);
    char a[80];
    fx_addr_format(&s->steps[1].from, s->steps[1].from_len, a, sizeof(a));
    assert_string_equal(a, "10.0.0.53:53");
    fx_addr_format(&s->steps[1].to, s->steps[1].to_len, a, sizeof(a));
    assert_string_equal(a, "192.0.2.10:5353");
    fx_addr_format(&s->steps[3].to, s->steps[3].to_len, a, sizeof(a));
    assert_string_equal(a, "[2001:db8::1]:53");
    fx_text t = { 0 };
    fx_script_format(s, &t);
    fx_script *s2 = parse(t.p, err, sizeof(err));
    if (!s2)
        fail_msg("printed script does not parse: %s\n%s", err, t.p);
    fx_text t2 = { 0 };
    fx_script_format(s2, &t2);
    assert_string_equal(t.p, t2.p);
    assert_non_null(strstr(t.p, "server-datagram: from 10.0.0.53:53 to 192.0.2.10:5353 \"answer\\x00\"\n"));
    fx_text_free(&t);
    fx_text_free(&t2);
    fx_script_free(s2);
    fx_script_free(s);
    expect_error("protocol udp\nclient-datagram: from 1.2.3.4 \"x\"\n",
                 "t.fwxs:2:23: from: missing port in '1.2.3.4' (expected ADDR:PORT, e.g. "
                 "127.0.0.1:8080, [::1]:80 or *:80)");
    expect_error("protocol udp\nclient-datagram: to 1.2.3.4:1 to 1.2.3.4:2 \"x\"\n",
                 "t.fwxs:2:31: 'to' given twice");
    expect_error("protocol udp\nclient-shutdown\n",
                 "t.fwxs:2:1: 'client-shutdown' in a UDP script (protocol udp): datagrams have no "
                 "connection to shut down or reset");
    expect_error("protocol udp\nclient-datagram: from\n", "t.fwxs:2:22: 'from' needs an ADDR:PORT");
}

static void test_full_script(void **state)
{
    (void)state;
    char err[512];
    fx_script *s = parse("# a comment\n"
                         "rule outbound\n"
                         "listen 127.0.0.1:9000\n"
                         "target 10.0.0.1:25\n"
                         "filter f/pass.dll\n"
                         "filter /abs/x.dll={99B051EE-0EFE-4E39-9206-1FF00C65CF3F}\n"
                         "\n"
                         "client: \"HELO x\\r\\n\" \"\\x00\\xff\\t\\\\\\\"\"  # two strings\n"
                         "server: \"\"\r\n"
                         "pause 250\n"
                         "client-shutdown\n"
                         "server-shutdown\n"
                         "client-abort\n"
                         "server-abort\n"
                         "expect-closed\n",
                         err, sizeof(err));
    if (!s)
        fail_msg("%s", err);
    assert_int_equal(s->rule, FX_RULE_OUTBOUND);
    assert_int_equal(s->nfilters, 2);
    assert_string_equal(s->filters[0].path, "/base/f/pass.dll");
    assert_null(s->filters[0].clsid);
    assert_string_equal(s->filters[1].path, "/abs/x.dll");
    assert_string_equal(s->filters[1].clsid, "{99B051EE-0EFE-4E39-9206-1FF00C65CF3F}");
    char a[64];
    fx_addr_format(&s->listen, s->listen_len, a, sizeof(a));
    assert_string_equal(a, "127.0.0.1:9000");
    fx_addr_format(&s->target, s->target_len, a, sizeof(a));
    assert_string_equal(a, "10.0.0.1:25");
    assert_int_equal(s->nsteps, 8);
    assert_int_equal(s->steps[0].op, FX_STEP_CLIENT_SEND);
    assert_int_equal(s->steps[0].line, 8);
    assert_int_equal(s->steps[0].len, 13);
    assert_memory_equal(s->steps[0].data, "HELO x\r\n\0\xff\t\\\"", 13);
    assert_int_equal(s->steps[1].op, FX_STEP_SERVER_SEND);
    assert_int_equal(s->steps[1].len, 0);
    assert_int_equal(s->steps[2].op, FX_STEP_PAUSE);
    assert_int_equal(s->steps[2].ms, 250);
    assert_int_equal(s->steps[3].op, FX_STEP_CLIENT_SHUTDOWN);
    assert_int_equal(s->steps[6].op, FX_STEP_SERVER_ABORT);
    assert_int_equal(s->steps[7].op, FX_STEP_EXPECT_CLOSED);
    fx_script_free(s);

    /* Defaults: publish, labels only. */
    s = parse("client: \"x\"\n", err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(s->rule, FX_RULE_PUBLISH);
    fx_addr_format(&s->target, s->target_len, a, sizeof(a));
    assert_string_equal(a, "10.0.0.1:80");
    fx_script_free(s);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("client: \"abc\n", "t.fwxs:1:9: unterminated string: no closing '\"' on this line");
    expect_error("client: abc\n",
                 "t.fwxs:1:9: expected a \"string\" (C-like escapes: \\n \\r \\t \\\\ \\\" \\xHH)");
    expect_error("\n\nclient \"a\"\n", "t.fwxs:3:7: expected ':' after 'client'");
    expect_error("client: \"\\q\"\n",
                 "t.fwxs:1:10: unknown escape '\\q' (use \\n \\r \\t \\0 \\\\ \\\" or \\xHH)");
    expect_error("client: \"\\x4\"\n", "t.fwxs:1:10: \\x needs exactly two hex digits");
    expect_error("client: \"a\" junk\n",
                 "t.fwxs:1:13: expected another \"string\", a # comment or the end of the line");
    expect_error("client: \"a\x01\"\n", "t.fwxs:1:11: control byte 0x01 in a string; write it as \\x01");
    expect_error("pause 60001\n", "t.fwxs:1:7: pause takes milliseconds, 0 to 60000");
    expect_error("pause 99999999999999999999999\n", "t.fwxs:1:7: pause takes milliseconds, 0 to 60000");
    expect_error("pause\n", "t.fwxs:1:6: 'pause' needs a value");
    expect_error("client-shutdown now\n", "t.fwxs:1:17: 'client-shutdown' takes no argument");
    expect_error("client: \"a\"\nlisten 1.2.3.4:5\n",
                 "t.fwxs:2:1: header key 'listen' after the first action; the header comes first");
    expect_error("rule sideways\n", "t.fwxs:1:6: rule is 'publish' or 'outbound', not 'sideways'");
    expect_error("rule publish\nrule publish\n", "t.fwxs:2:6: 'rule' given twice");
    expect_error("target nowhere\n", "t.fwxs:1:8: target: missing port in 'nowhere' (expected ADDR:PORT, e.g. "
                 "127.0.0.1:8080, [::1]:80 or *:80)");
    expect_error("frobnicate\n",
                 "t.fwxs:1:1: unknown action or header key 'frobnicate' (actions: client:, server:, "
                 "client-shutdown, server-shutdown, client-abort, server-abort, pause, expect-closed, "
                 "client-datagram:, server-datagram:)");
    expect_error("client-datagram: \"x\"\n", "t.fwxs:1:1: 'client-datagram' needs 'protocol udp' in the header");
    expect_error("protocol udp\nclient: \"x\"\n", "t.fwxs:2:1: 'client:' in a UDP script (protocol udp): use client-datagram:");
    expect_error("filter x.dll=notaguid\n",
                 "t.fwxs:1:14: 'notaguid' is not a CLSID ({XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX})");
    expect_error("# nothing\n", "t.fwxs:1:1: the script has no actions (client:, server:, ...)");
    expect_error("", "t.fwxs:1:1: the script has no actions (client:, server:, ...)");
    expect_error("@@@\n", "t.fwxs:1:1: expected an action or a header key, not '@'");
    expect_error("server: :\n", "t.fwxs:1:9: expected a \"string\" (C-like escapes: \\n \\r \\t \\\\ \\\" \\xHH)");
}

static void test_hostile(void **state)
{
    (void)state;
    char err[512];
    /* A NUL byte. */
    fx_script *s = fx_script_parse("t.fwxs", NULL, "client: \"a\0b\"\n", 14, err, sizeof(err));
    assert_null(s);
    assert_string_equal(err, "t.fwxs:1:11: NUL byte in the script (a text file is expected)");
    /* An over-long line. */
    size_t n = FX_SCRIPT_MAX_LINE + 100;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'a', n);
    memcpy(big, "client: \"", 9);
    big[n] = 0;
    s = fx_script_parse("t.fwxs", NULL, big, n, err, sizeof(err));
    assert_null(s);
    assert_string_equal(err, "t.fwxs:1:1: line longer than 1048576 bytes");
    /* Too big as a whole. */
    s = fx_script_parse("t.fwxs", NULL, big, (size_t)FX_SCRIPT_MAX_SIZE + 1, err, sizeof(err));
    assert_null(s);
    assert_string_equal(err, "t.fwxs: the script is larger than 16777216 bytes");
    free(big);
    /* Random garbage never crashes and always explains itself. */
    unsigned seed = 7;
    char buf[256];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(rand_r(&seed) % sizeof(buf));
        for (size_t i = 0; i < len; i++) {
            static const char alphabet[] = "client:server-shutdownabortpause\"\\x0F9 \n#\r\t\x01\xff";
            buf[i] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
        }
        s = fx_script_parse("g.fwxs", NULL, buf, len, err, sizeof(err));
        if (s)
            fx_script_free(s);
        else
            assert_true(!strncmp(err, "g.fwxs:", 7));
    }
    /* Truncations of a valid script. */
    const char *good = "rule publish\nclient: \"GET / HTTP/1.0\\r\\n\\r\\n\"\nserver-shutdown\n";
    for (size_t cut = 0; cut < strlen(good); cut++) {
        s = fx_script_parse("c.fwxs", NULL, good, cut, err, sizeof(err));
        if (s)
            fx_script_free(s);
        else
            assert_true(!strncmp(err, "c.fwxs:", 7));
    }
}

static void test_escape_roundtrip(void **state)
{
    (void)state;
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    fx_text t = { 0 };
    fx_text_add(&t, "client: \"", 9);
    fx_escape(&t, all, sizeof(all));
    fx_text_add(&t, "\"\n", 2);
    char err[512];
    fx_script *s = parse(t.p, err, sizeof(err));
    if (!s)
        fail_msg("%s", err);
    assert_int_equal(s->steps[0].len, 256);
    assert_memory_equal(s->steps[0].data, all, 256);
    fx_script_free(s);
    fx_text_free(&t);
}

static void test_diff(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(fx_text_diff("a", "# x\nl1\nl2\n", "b", "l1\n# y\nl2\n", NULL), 0);
    FILE *f = open_memstream(&out, &len);
    assert_int_equal(fx_text_diff("gold", "1\n2\n3\n4\n5\n6\n", "run", "1\n2\n3\nX\n5\n6\n", f), 1);
    fclose(f);
    assert_string_equal(out, "--- gold\n+++ run\n@@ -1,6 +1,6 @@\n 1\n 2\n 3\n-4\n+X\n 5\n 6\n");
    free(out);
}

static void test_chunking(void **state)
{
    (void)state;
    fx_chunking c;
    char err[256];
    assert_int_equal(fx_chunking_parse("fixed:1", &c, err, sizeof(err)), 0);
    assert_int_equal(c.fixed, 1);
    assert_int_equal(fx_chunking_parse("random:42", &c, err, sizeof(err)), 0);
    assert_true(c.random && c.seed == 42);
    assert_int_equal(fx_chunking_parse("fixed:0", &c, err, sizeof(err)), -1);
    assert_string_equal(err, "--chunking fixed:0: N is 1 to 1048576 bytes");
    assert_int_equal(fx_chunking_parse("random:99999999999999999999999", &c, err, sizeof(err)), -1);
    assert_int_equal(fx_chunking_parse("lumpy", &c, err, sizeof(err)), -1);
    assert_string_equal(err, "--chunking is fixed:N or random:SEED, not 'lumpy'");
}

/* ---- the driver against a relay thread: copies host ends to each other,
 * records read sizes of the client->server direction. */
struct relay {
    int a, b;                  /* host's client end, host's server end */
    volatile int done;
    size_t reads[4096];
    int nreads;
    int reset_server_on_client_eof;
};

static void *relay_main(void *arg)
{
    struct relay *r = arg;
    int open_a = 1, open_b = 1;
    char buf[65536];
    while (open_a || open_b) {
        struct pollfd p[2] = { { r->a, open_a ? POLLIN : 0, 0 }, { r->b, open_b ? POLLIN : 0, 0 } };
        poll(p, 2, 50);
        if (open_a && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = recv(r->a, buf, sizeof(buf), MSG_DONTWAIT);
            if (n > 0) {
                if (r->nreads < 4096)
                    r->reads[r->nreads++] = (size_t)n;
                send(r->b, buf, (size_t)n, MSG_NOSIGNAL);
            } else if (n == 0 || errno != EAGAIN) {
                open_a = 0;
                if (r->reset_server_on_client_eof) {
                    fx_close_abort(r->b);
                    r->b = -1;
                    open_b = 0;
                } else {
                    shutdown(r->b, SHUT_WR);
                }
            }
        }
        if (open_b && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = recv(r->b, buf, sizeof(buf), MSG_DONTWAIT);
            if (n > 0)
                send(r->a, buf, (size_t)n, MSG_NOSIGNAL);
            else if (n == 0 || errno != EAGAIN) {
                open_b = 0;
                shutdown(r->a, SHUT_WR);
            }
        }
    }
    close(r->a);
    if (r->b >= 0)
        close(r->b);
    r->done = 1;
    return NULL;
}

static int relay_done(void *arg) { return ((struct relay *)arg)->done; }

static char *play(const char *text, const char *chunking, struct relay *r, int reset)
{
    char err[512];
    fx_script *s = parse(text, err, sizeof(err));
    if (!s)
        fail_msg("%s", err);
    int cp[2], sp[2];
    assert_int_equal(fx_socketpair_stream(cp), 0);
    assert_int_equal(fx_socketpair_stream(sp), 0);
    memset(r, 0, sizeof(*r));
    r->a = cp[1];
    r->b = sp[0];
    r->reset_server_on_client_eof = reset;
    pthread_t th;
    pthread_create(&th, NULL, relay_main, r);
    fx_replay_opts o;
    memset(&o, 0, sizeof(o));
    assert_int_equal(fx_chunking_parse(chunking, &o.chunking, err, sizeof(err)), 0);
    o.timeout_ms = 3000;
    o.done = relay_done;
    o.arg = r;
    fx_replay_result res;
    memset(&res, 0, sizeof(res));
    assert_int_equal(fx_replay_run(s, cp[0], cp[1], sp[1], sp[0], &o, &res, err, sizeof(err)), 0);
    pthread_join(th, NULL);
    fx_text t = { 0 };
    fx_replay_format(&res, "x/t.fwxs", &t);
    fx_replay_result_free(&res);
    fx_script_free(s);
    return t.p;
}

static void test_driver(void **state)
{
    (void)state;
    struct relay r;
    const char *script = "client: \"hello, \" \"world\\n\\x01\"\nserver: \"OK\\n\"\n"
                         "client-shutdown\nserver-shutdown\nexpect-closed\n";
    const char *want = "# fwxreplay golden file of t.fwxs (fwxreplay --update rewrites it)\n"
                       "connection: allowed\n"
                       "server received: \"hello, world\\n\"\n"
                       "server received: \"\\x01\"\n"
                       "server saw: closed\n"
                       "client received: \"OK\\n\"\n"
                       "client saw: closed\n";
    char *got = play(script, "fixed:1", &r, 0);
    assert_string_equal(got, want);
    /* One read per 1-byte chunk: the driver waited for each. */
    assert_int_equal(r.nreads, 14);
    for (int i = 0; i < r.nreads; i++)
        assert_int_equal(r.reads[i], 1);
    free(got);
    got = play(script, "random:42", &r, 0);
    assert_string_equal(got, want);
    free(got);
    got = play(script, "fixed:65536", &r, 0);
    assert_string_equal(got, want);
    assert_int_equal(r.nreads, 1);
    free(got);
    /* An fx_close_abort of the host's end is seen as a reset. */
    got = play("client: \"x\"\nclient-shutdown\n", "fixed:1", &r, 1);
    assert_non_null(strstr(got, "server saw: reset\n"));
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_script),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_udp),
        cmocka_unit_test(test_escape_roundtrip),
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_chunking),
        cmocka_unit_test(test_driver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
