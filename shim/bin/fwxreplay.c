/*
 * fwxreplay.c — regression-tests filter binaries without a network: runs
 * one script (docs/replay-format.md) through the configured filter chain
 * with the same host objects and pump as fwxhost, on in-memory ends
 * (socketpairs), and compares what each side received with the golden
 * file SCRIPT.golden. UDP scripts run through the host's UDP rule with
 * in-memory datagram sockets (fx_udp_emulate; HOST-800/801).
 *
 *   fwxreplay [--filter DLL[=CLSID] ...] [--chunking fixed:N|random:SEED]
 *             [--update] [--timeout MS] SCRIPT
 *   fwxreplay [--filter ...] [options] --pcap FILE [--stream N]
 *   fwxreplay --pcap FILE [--stream N] --to-script OUT | --list
 *
 * Owns the command line, the replay's rule and session, and the golden
 * file; the driver is shim/core/fxreplay.c. Suites of scripts (a
 * directory, TAP, JUnit) are run by the native launcher, one process per
 * script (shim/bin/replaysuite.c).
 *
 * Exit status: 0 pass, 1 mismatch (a diff on stdout), 2 error.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fxconf.h"
#include "fxpcap.h"
#include "fxreplay.h"
#include "fxreplayudp.h"
#include "fxscript.h"
#include "fxudp.h"
#include "host.h"
#include "hostobj.h"

static void usage(FILE *to)
{
    fprintf(to,
        "usage: fwxreplay [--filter DLL[=CLSID] ...] [options] SCRIPT\n"
        "       fwxreplay [--filter DLL[=CLSID] ...] [options] [--junit FILE] DIR\n"
        "       fwxreplay [--filter DLL[=CLSID] ...] [options] --pcap FILE [--stream N]\n"
        "       fwxreplay --pcap FILE [--stream N] --to-script OUT | --list\n"
        "\n"
        "Plays a scripted client/server conversation (docs/replay-format.md) through\n"
        "the filter chain, with the host's own objects and pump but no network, and\n"
        "compares what each side received with SCRIPT.golden.\n"
        "\n"
        "  --filter DLL[=CLSID]   load a filter (repeatable, chain order); replaces the\n"
        "                         script's 'filter' lines. The launcher picks the x86 or\n"
        "                         x64 host from these DLLs (or from the script's lines)\n"
        "  --chunking fixed:N     split each payload into writes of N bytes (default 65536;\n"
        "                         UDP scripts: datagrams are never split)\n"
        "  --chunking random:SEED split into writes of 1..512 bytes from SEED\n"
        "  --update               write SCRIPT.golden from this run instead of comparing\n"
        "  --timeout MS           bound of every wait (default 5000)\n"
        "  --log-level LEVEL      host log on stderr (default warn)\n"
        "  --trace FILE           write every filter/host call (both directions, decoded\n"
        "                         arguments, results, threads) to FILE\n"
        "  --junit FILE           with DIR: also write a JUnit XML report\n"
        "  --pcap FILE            replay a TCP or UDP flow of a pcap capture (tcpdump -w) instead\n"
        "                         of a script; its golden file is FILE.golden (FILE.N.golden\n"
        "                         with --stream N)\n"
        "  --stream N             the capture's flow N (default 1: the first one; --list)\n"
        "  --list                 with --pcap: print the capture's TCP/UDP flows\n"
        "  --to-script OUT        with --pcap: write the flow as a script to OUT ('-': stdout)\n"
        "  -h, --help             this text\n"
        "\n"
        "DIR runs every *.fwxs script in it and prints TAP.\n"
        "Exit status: 0 pass, 1 a golden file differs (diff on stdout), 2 error.\n");
}

static int want_value(int argc, char **argv, int i)
{
    if (i + 1 >= argc) {
        fprintf(stderr, "fwxreplay: %s needs a value (see --help)\n", argv[i]);
        exit(2);
    }
    return i + 1;
}

/* The accept, run on the worker's loop as fwxhost's on_accept would. */
struct accept_task {
    struct worker *worker;
    struct rule *rule;
    int client_fd, server_fd;
    const fx_script *script;
    volatile LONG ready;
    BOOL denied;
};

static void accept_task_run(void *arg)
{
    struct accept_task *t = arg;
    LONG before = the_host->denied_connections;
    connection_accept_ends(t->worker, t->rule, t->client_fd, t->server_fd,
                           &t->script->client, t->script->client_len,
                           &t->script->target, t->script->target_len);
    t->denied = the_host->denied_connections != before;
    InterlockedExchange(&t->ready, 1);
}

static int task_ready(void *arg)
{
    return ((struct accept_task *)arg)->ready != 0;
}

static int task_done(void *arg)
{
    return task_ready(arg) && the_host->live_connections == 0;
}

/* ---- UDP scripts (HOST-800/801) */

/* Loop barriers: a task posted to the worker's loop runs after the work
 * queued before it. The pump is quiet when no pump pass ran between two
 * barriers: nothing was left to do and nothing new came in. */
static volatile LONG barrier_gen;

static void barrier_task(void *arg)
{
    InterlockedIncrement(&barrier_gen);
}

static int barrier(fx_loop *loop, uint64_t until)
{
    LONG want = barrier_gen + 1;
    fx_loop_post(loop, barrier_task, NULL);
    while (barrier_gen < want) {
        if (fx_now_ms() >= until)
            return -1;
        usleep(100);
    }
    return 0;
}

static int pump_quiet(void *arg, unsigned ms)
{
    fx_loop *loop = arg;
    uint64_t until = fx_now_ms() + ms;
    LONG prev;
    the_host->count_pump_passes = TRUE;
    if (barrier(loop, until) != 0)
        return -1;
    prev = the_host->pump_passes;
    for (;;) {
        if (barrier(loop, until) != 0)
            return -1;
        LONG cur = the_host->pump_passes;
        if (cur == prev)
            return 0;
        prev = cur;
    }
}

/* The connect hook: each client's socket towards the server is an
 * in-memory one connected to the target, whose address is the rule's
 * listening one (as GetExternalSocketName of TCP replays). */
static const fx_rule_conf *udp_rc;

static int udp_connect_hook(const void *client, int client_len, const void *target,
                            int target_len, void *arg)
{
    int sv[2];
    int rc = fx_udp_socketpair(sv);
    if (rc != 0)
        return rc;
    if (fx_udp_emulate(sv[1], &udp_rc->listen, udp_rc->listen_len, target, target_len) != 0 ||
        fx_replay_udp_add_server(client, client_len, target, target_len, sv[0]) != 0) {
        close(sv[0]);
        close(sv[1]);
        return -24;     /* EMFILE */
    }
    return sv[1];
}

/* Outbound: the client's transparent socket, bound to its original
 * destination and connected to the client. */
static int udp_peer_hook(const void *local, int local_len, const void *peer, int peer_len,
                         void *arg)
{
    int sv[2];
    int rc = fx_udp_socketpair(sv);
    if (rc != 0)
        return rc;
    if (fx_udp_emulate(sv[1], local, local_len, peer, peer_len) != 0 ||
        fx_replay_udp_add_client(peer, peer_len, local, local_len, sv[0]) != 0) {
        close(sv[0]);
        close(sv[1]);
        return -24;     /* EMFILE */
    }
    return sv[1];
}

struct udp_open_task {
    struct rule *rule;
    struct worker *w;
    int fd;
    int rc;
    char err[512];
    volatile LONG done;
};

static void udp_open_run(void *arg)
{
    struct udp_open_task *t = arg;
    t->rc = udp_rule_open_fd(t->rule, t->w, t->fd, t->err, sizeof(t->err));
    InterlockedExchange(&t->done, 1);
}

static void udp_stop_run(void *arg)
{
    struct udp_open_task *t = arg;
    udp_rule_stop(t->rule);
    InterlockedExchange(&t->done, 2);
}

static int wait_flag(volatile LONG *flag, LONG value, unsigned ms)
{
    uint64_t until = fx_now_ms() + ms;
    while (*flag != value) {
        if (fx_now_ms() >= until)
            return -1;
        usleep(200);
    }
    return 0;
}

/* Plays a UDP script on the rule (its fwx_Bind_Udp has run). 0 or 2. */
static int run_udp(struct host *host, struct rule *rule, const fx_script *script,
                   const char *script_path, unsigned timeout_ms, fx_replay_result *result)
{
    static struct udp_open_task t;
    int pair[2];
    char err[1024];
    LONG denied_before = the_host->denied_connections;

    if (fx_udp_socketpair(pair) != 0 ||
        fx_udp_emulate(pair[1], &rule->conf->listen, rule->conf->listen_len, NULL, 0) != 0) {
        fprintf(stderr, "fwxreplay: socketpair: %s\n", strerror(errno));
        return 2;
    }
    udp_rc = rule->conf;
    udp_set_connect_hook(udp_connect_hook, NULL);
    udp_set_peer_hook(udp_peer_hook);
    t.rule = rule;
    t.w = &host->workers[0];
    t.fd = pair[1];
    fx_loop_post(t.w->loop, udp_open_run, &t);
    if (wait_flag(&t.done, 1, timeout_ms) != 0 || t.rc != 0) {
        fprintf(stderr, "fwxreplay: %s: %s\n", script_path,
                t.done ? t.err : "the host did not open the UDP rule in time");
        close(pair[0]);
        return 2;
    }
    fx_replay_udp_opts o = { timeout_ms, pump_quiet, t.w->loop };
    int rc = fx_replay_run_udp(script, pair[0], &o, result, err, sizeof(err));
    result->denied_destinations = the_host->denied_connections - denied_before;
    fx_loop_post(t.w->loop, udp_stop_run, &t);
    if (wait_flag(&t.done, 2, timeout_ms) != 0) {
        fprintf(stderr, "fwxreplay: %s: the host did not stop the UDP rule in time\n",
                script_path);
        return 2;
    }
    udp_set_connect_hook(NULL, NULL);
    udp_set_peer_hook(NULL);
    if (rc != 0) {
        fprintf(stderr, "fwxreplay: %s: %s\n", script_path, err);
        return 2;
    }
    return 0;
}

static char *read_all(const char *path, int *missing)
{
    FILE *f = fopen(path, "rb");
    fx_text t = { 0 };
    char buf[8192];
    size_t n;
    *missing = !f && errno == ENOENT;
    if (!f)
        return NULL;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && t.len < FX_SCRIPT_MAX_SIZE * 4)
        fx_text_add(&t, buf, n);
    fclose(f);
    if (!t.p)
        fx_text_add(&t, "", 0);
    return t.p;
}

static void add_filter(fx_config *cfg, const char *path, const char *clsid)
{
    char name[32], err[1024];
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    int len = (int)strcspn(base, ".");
    snprintf(name, sizeof(name), "%.*s", len > 24 ? 24 : len, base);
    for (size_t k = 0, dup = 2; k < cfg->nfilters; k++)
        if (!strcmp(cfg->filters[k].name, name)) {
            snprintf(name, sizeof(name), "%.*s-%zu", len > 24 ? 24 : len, base, dup++);
            k = (size_t)-1;
        }
    if (fx_config_add_filter(cfg, name, path, clsid, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxreplay: filter %s: %s\n", path, err);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    const char *script_path = NULL, *level_text = "warn", *chunk_text = "fixed:65536";
    const char *trace = NULL;
    const char *pcap_path = NULL, *to_script = NULL;
    unsigned timeout_ms = 5000;
    unsigned long stream = 0;
    int update = 0, nfilters = 0, list = 0;
    char err[2048];
    static struct host host;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--filter")) {
            i = want_value(argc, argv, i);
            nfilters++;
        } else if (!strcmp(a, "--chunking")) {
            chunk_text = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--update")) {
            update = 1;
        } else if (!strcmp(a, "--timeout")) {
            const char *v = argv[i = want_value(argc, argv, i)];
            char *end;
            unsigned long t = strtoul(v, &end, 10);
            if (!*v || *end || t < 1 || t > 600000) {
                fprintf(stderr, "fwxreplay: --timeout: '%s' is not 1 to 600000 ms\n", v);
                return 2;
            }
            timeout_ms = (unsigned)t;
        } else if (!strcmp(a, "--log-level")) {
            level_text = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--trace")) {
            trace = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--pcap")) {
            pcap_path = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--to-script")) {
            to_script = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--list")) {
            list = 1;
        } else if (!strcmp(a, "--stream")) {
            const char *v = argv[i = want_value(argc, argv, i)];
            char *end;
            stream = strtoul(v, &end, 10);
            if (!*v || *end || stream < 1 || stream > FX_PCAP_MAX_FLOWS) {
                fprintf(stderr, "fwxreplay: --stream: '%s' is not a flow number (1 to %d)\n", v,
                        FX_PCAP_MAX_FLOWS);
                return 2;
            }
        } else if (!strcmp(a, "--junit")) {
            fprintf(stderr, "fwxreplay: --junit goes with a directory of scripts (run through "
                    "the fwxreplay launcher)\n");
            return 2;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "fwxreplay: unknown argument '%s' (see --help)\n", a);
            return 2;
        } else if (script_path) {
            fprintf(stderr, "fwxreplay: one SCRIPT at a time (or a directory through the "
                    "launcher); '%s' and '%s' given\n", script_path, a);
            return 2;
        } else {
            script_path = a;
        }
    }
    if (pcap_path && script_path) {
        fprintf(stderr, "fwxreplay: --pcap FILE replaces SCRIPT; '%s' given too\n", script_path);
        return 2;
    }
    if (!pcap_path && (to_script || list || stream)) {
        fprintf(stderr, "fwxreplay: --to-script, --list and --stream go with --pcap FILE\n");
        return 2;
    }
    if (!script_path && !pcap_path) {
        fprintf(stderr, "fwxreplay: no SCRIPT given (see --help)\n");
        return 2;
    }
    fx_chunking chunking;
    if (fx_chunking_parse(chunk_text, &chunking, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxreplay: %s\n", err);
        return 2;
    }
    int level = fx_log_level_parse(level_text);
    if (level < 0) {
        fprintf(stderr, "fwxreplay: --log-level: unknown level '%s'\n", level_text);
        return 2;
    }
    fx_log_init("fwxreplay", level);

    fx_script *script;
    char *pcap_script_path = NULL;
    if (pcap_path) {
        int status = 2;
        if (!(script = fx_pcap_cli(pcap_path, stream, list, to_script, argc, argv, &status)))
            return status;
        /* The golden file sits next to the capture. */
        size_t plen = strlen(pcap_path) + 24;
        if (!(pcap_script_path = malloc(plen)))
            return 2;
        if (stream)
            snprintf(pcap_script_path, plen, "%s.%lu", pcap_path, stream);
        else
            snprintf(pcap_script_path, plen, "%s", pcap_path);
        script_path = pcap_script_path;
    } else if (!(script = fx_script_load(script_path, err, sizeof(err)))) {
        fprintf(stderr, "fwxreplay: %s\n", err);
        return 2;
    }
    fx_config *cfg = fx_config_new_empty();
    if (!cfg || fx_config_set(cfg, "host", "workers", "1", err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxreplay: out of memory\n");
        return 2;
    }
    if (trace && fx_config_set(cfg, "host", "trace", trace, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxreplay: --trace: %s\n", err);
        return 2;
    }
    if (nfilters) {
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--filter"))
                continue;
            char *spec = strdup(argv[++i]), *eq = strchr(spec, '=');
            if (eq)
                *eq++ = 0;
            add_filter(cfg, spec, eq);
            free(spec);
        }
    } else {
        for (size_t i = 0; i < script->nfilters; i++)
            add_filter(cfg, script->filters[i].path, script->filters[i].clsid);
    }

    signal(SIGPIPE, SIG_IGN);
    CoInitializeEx(NULL, COINIT_MULTITHREADED);
    if (host_start(&host, cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxreplay: %s: %s\n", script_path, err);
        host_stop(&host, 0);
        return 2;
    }

    /* The script's rule: labels only, no listener (HOST-001 otherwise). */
    static fx_rule_conf rc;
    static struct rule rule;
    rc.name = (char *)"replay";
    rc.type = script->rule;
    rc.protocol = script->protocol;
    rc.udp_timeout = 3600;      /* no destination expires during a replay */
    rc.has_listen = rc.has_target = 1;
    rc.listen = script->listen;
    rc.listen_len = script->listen_len;
    rc.target = script->target;
    rc.target_len = script->target_len;
    rule.conf = &rc;
    for (int w = 0; w < 64; w++)
        rule.listen_fds[w] = -1;
    int rc_exit = 0;
    if (rc.type == FX_RULE_PUBLISH) {
        SOCKADDR_STORAGE win;
        int wlen = sizeof(win);
        fx_sa_to_win32(&rc.target, rc.target_len, &win, &wlen);
        if (!(rule.session = session_create(&win, wlen, "rule replay"))) {
            fprintf(stderr, "fwxreplay: out of memory\n");
            rc_exit = 2;
        } else if (connection_rule_listen_events(&rule, &host.workers[0], err, sizeof(err)) != 0) {
            fprintf(stderr, "fwxreplay: %s: %s\n", script_path, err);
            rc_exit = 2;
        }
    }

    fx_replay_result result;
    memset(&result, 0, sizeof(result));
    int cpair[2] = { -1, -1 }, spair[2] = { -1, -1 };
    if (!rc_exit && script->protocol == FX_PROTO_UDP) {
        rc_exit = run_udp(&host, &rule, script, script_path, timeout_ms, &result);
    } else if (!rc_exit && (fx_socketpair_stream(cpair) != 0 || fx_socketpair_stream(spair) != 0)) {
        fprintf(stderr, "fwxreplay: socketpair: %s\n", strerror(errno));
        rc_exit = 2;
    }
    if (!rc_exit && script->protocol != FX_PROTO_UDP) {
        static struct accept_task task;
        task.worker = &host.workers[0];
        task.rule = &rule;
        task.client_fd = cpair[1];
        task.server_fd = spair[0];
        task.script = script;
        fx_replay_opts opts;
        memset(&opts, 0, sizeof(opts));
        opts.chunking = chunking;
        opts.timeout_ms = timeout_ms;
        opts.ready = task_ready;
        opts.done = task_done;
        opts.arg = &task;
        fx_loop_post(host.workers[0].loop, accept_task_run, &task);
        if (fx_replay_run(script, cpair[0], cpair[1], spair[1], spair[0], &opts, &result, err,
                          sizeof(err)) != 0) {
            fprintf(stderr, "fwxreplay: %s: %s\n", script_path, err);
            rc_exit = 2;
        }
        result.denied = task.denied;
    }

    if (rule.listener)
        connection_rule_listen_end(&rule);
    if (rule.session) {
        session_end(rule.session);
        IFWXSession_Release(session_iface(rule.session));
    }
    host_stop(&host, 2);
    if (rc_exit)
        return rc_exit;

    /* ---- the golden file */
    fx_text actual = { 0 };
    char *golden_path = malloc(strlen(script_path) + sizeof(".golden"));
    if (!golden_path)
        return 2;
    sprintf(golden_path, "%s.golden", script_path);
    fx_replay_format(&result, script_path, &actual);
    if (actual.oom) {
        fprintf(stderr, "fwxreplay: out of memory\n");
        return 2;
    }
    if (result.expect_failed) {
        printf("fwxreplay: %s: an expectation failed:\n%s", script_path, result.notes.p);
        return 1;
    }
    if (update) {
        FILE *f = fopen(golden_path, "w");
        if (!f || fwrite(actual.p, 1, actual.len, f) != actual.len || fclose(f) != 0) {
            fprintf(stderr, "fwxreplay: %s: %s\n", golden_path, strerror(errno));
            return 2;
        }
        printf("fwxreplay: %s: wrote %s\n", script_path, golden_path);
        return 0;
    }
    int missing = 0;
    char *expected = read_all(golden_path, &missing);
    if (!expected) {
        fprintf(stderr, "fwxreplay: %s: %s%s\n", golden_path, strerror(errno),
                missing ? " (run with --update to create it)" : "");
        return 2;
    }
    fflush(stdout);
    if (fx_text_diff(golden_path, expected, "this run", actual.p, NULL) != 0) {
        printf("fwxreplay: %s: differs from its golden file (- golden, + this run):\n",
               script_path);
        fx_text_diff(golden_path, expected, "this run", actual.p, stdout);
        return 1;
    }
    printf("fwxreplay: %s: pass\n", script_path);
    fx_text_free(&actual);
    free(expected);
    free(golden_path);
    fx_replay_result_free(&result);
    fx_script_free(script);
    fx_config_free(cfg);
    CoUninitialize();
    return 0;
}
