/*
 * fwxhost.c — the Firewall service: runs ISA 2000 application filters in
 * front of real TCP traffic. Command line, configuration, signals, ready
 * message; the work is in shim/com/host.c.
 *
 *   fwxhost --filter DLL[=CLSID] ... --listen ADDR:PORT --target ADDR:PORT
 *   fwxhost --config FILE
 *   fwxhost --stats [--control PATH | --config FILE]
 *
 * SIGTERM/SIGINT: stop accepting, drain live connections, exit 0.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fxconf.h"
#include "fxctl.h"
#include "fxinherit.h"
#include "fxsec.h"
#include "host.h"
#include "hostobj.h"
#include "stats.h"
#include "install.h"

static int signal_pipe[2] = { -1, -1 };

static void usage(FILE *to)
{
    fprintf(to,
        "usage: fwxhost --filter DLL[=CLSID] [--filter ...] --listen ADDR:PORT --target ADDR:PORT\n"
        "       fwxhost --config FILE\n"
        "       fwxhost --stats [--control PATH | --config FILE]\n"
        "\n"
        "Runs ISA Server 2000 application-filter DLLs in front of real TCP traffic.\n"
        "With --listen/--target: one publishing rule (clients connect to ADDR:PORT,\n"
        "the host connects to the target; filters see fwx_AcceptedConnection).\n"
        "\n"
        "  --filter DLL[=CLSID]  load a filter (repeatable; chain order = order given)\n"
        "  --listen ADDR:PORT    where clients connect (e.g. 127.0.0.1:8080, *:80)\n"
        "  --target ADDR:PORT    the published server\n"
        "  --config FILE         INI configuration (see docs/configuration.md)\n"
        "  --workers N           worker threads (default: one per CPU core)\n"
        "  --log-level LEVEL     error, warn, notice, info, debug (default notice)\n"
        "  --drain SECONDS       on SIGTERM, wait this long for connections (default 10)\n"
        "  --install DLL         run the filter's DllRegisterServer (or DllInstall) with\n"
        "                        the host's IFWXFilterAdmin and print the [filter NAME]\n"
        "                        section it registered (with --abi FILE if needed)\n"
        "  --abi FILE            read IID/CLSID/flag overrides ([abi] sections, e.g. the\n"
        "                        output of fwxinfo --discover) from FILE\n"
        "  --trace FILE          write every filter/host call (both directions, decoded\n"
        "                        arguments, results, threads) to FILE ([host] trace)\n"
        "  --record DIR          write each connection as a fwxreplay script into DIR\n"
        "                        when it ends ([host] record; see docs/replay-format.md)\n"
        "  --control PATH        the control socket (default: [host] control, else\n"
        "                        /run/fwxshim/fwxhost.sock as root, else\n"
        "                        $XDG_RUNTIME_DIR/fwxhost.sock or /tmp/fwxhost-UID.sock)\n"
        "  --user NAME           once listening, drop root and run as NAME ([host] user;\n"
        "                        see docs/security.md)\n"
        "  --no-supervisor       run the Wine host process alone: no restart of a\n"
        "                        stuck or crashed host, no SIGHUP reload\n"
        "  --stats               ask the host on the control socket for its counters,\n"
        "                        print them and exit (2 if no host answers)\n"
        "  -h, --help            this text\n"
        "\n"
        "A native supervisor binds the listening sockets and runs the host in a Wine\n"
        "worker process: it restarts the worker when all its threads are stuck in\n"
        "filter code or it crashes ([host] restart-limit, restart-delay), and on\n"
        "SIGHUP re-reads the configuration and starts a new worker, while the old one\n"
        "finishes its live sessions ([host] reload-drain).\n"
        "\n"
        "Prints \"fwxhost: ready\" on stderr once listening. Exit status: 0 after a\n"
        "clean stop, 1 when the supervisor gave up restarting the worker, 2 for a\n"
        "configuration or start-up error, 3 after a stop that left workers stuck in\n"
        "filter code (see [host] hang-timeout).\n");
}

/* Async-signal-safe: one byte into a pipe the main thread waits on. */
static unsigned drain = 10;

static void on_signal(int sig)
{
    char c = (char)sig;
    if (sig == SIGTERM || sig == SIGINT)
        host_cut_drain(drain);    /* also ends a long drain after a reload */
    if (write(signal_pipe[1], &c, 1) < 0) {
        /* nothing to do: the main thread is already waking up */
    }
}

static int want_value(int argc, char **argv, int i)
{
    if (i + 1 >= argc) {
        fprintf(stderr, "fwxhost: %s needs a value (see --help)\n", argv[i]);
        exit(2);
    }
    return i + 1;
}

/* fwxhost --install DLL [--abi FILE] [--log-level L]: the filter's own registration,
 * printed as a [filter NAME] section (install.c, HOST-302). */
static int install_main(int argc, char **argv)
{
    const char *dll = NULL, *abi_file = NULL, *level_text = "notice";
    char err[2048];
    int level, rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--install"))
            dll = argv[i = want_value(argc, argv, i)];
        else if (!strcmp(argv[i], "--abi"))
            abi_file = argv[i = want_value(argc, argv, i)];
        else if (!strcmp(argv[i], "--log-level"))
            level_text = argv[i = want_value(argc, argv, i)];
        else {
            fprintf(stderr, "fwxhost: --install takes only --abi and --log-level (not '%s')\n", argv[i]);
            return 2;
        }
    }
    if ((level = fx_log_level_parse(level_text)) < 0) {
        fprintf(stderr, "fwxhost: --log-level: unknown level '%s'\n", level_text);
        return 2;
    }
    fx_log_init("fwxhost", level);
    fx_config *cfg = fx_config_new_empty();
    if (!cfg) {
        fprintf(stderr, "fwxhost: out of memory\n");
        return 2;
    }
    if (abi_file && fx_config_include(cfg, abi_file, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: --abi: %s\n", err);
        return 2;
    }
    if (abi_apply(cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: %s\n", err);
        return 2;
    }
    CoInitializeEx(NULL, COINIT_MULTITHREADED);
    rc = install_filter(dll, stdout, err, sizeof(err));
    CoUninitialize();
    fflush(stdout);
    fx_config_free(cfg);
    if (rc != 0) {
        fprintf(stderr, "fwxhost: --install: %s\n", err);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--install"))
            return install_main(argc, argv);

    const char *config_path = NULL, *listen = NULL, *target = NULL, *workers = NULL;
    const char *level_text = "notice", *control = NULL, *trace = NULL, *record = NULL, *user = NULL;
    const char *abi_file = NULL;
    int stats = 0;
    char err[2048];
    fx_config *cfg = NULL;
    static struct host host;
    int nfilters = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("fwxhost (fwxshim) %s, %s-bit host\n", FWX_VERSION, sizeof(void *) == 8 ? "64" : "32");
            return 0;
        } else if (!strcmp(a, "--config")) {
            config_path = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--listen")) {
            listen = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--target")) {
            target = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--workers")) {
            workers = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--log-level")) {
            level_text = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--drain")) {
            drain = (unsigned)atoi(argv[i = want_value(argc, argv, i)]);
        } else if (!strcmp(a, "--control")) {
            control = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--trace")) {
            trace = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--abi")) {
            abi_file = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--no-supervisor")) {
            /* the launcher's: it then runs this process directly */
        } else if (!strcmp(a, "--record")) {
            record = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--user")) {
            user = argv[i = want_value(argc, argv, i)];
        } else if (!strcmp(a, "--stats")) {
            stats = 1;
        } else if (!strcmp(a, "--filter")) {
            i = want_value(argc, argv, i);
            nfilters++;
        } else {
            fprintf(stderr, "fwxhost: unknown argument '%s' (see --help)\n", a);
            return 2;
        }
    }
    int level = fx_log_level_parse(level_text);
    if (level < 0) {
        fprintf(stderr, "fwxhost: --log-level: unknown level '%s'\n", level_text);
        return 2;
    }
    fx_log_init("fwxhost", level);

    if (stats) {
        /* Client mode: no filter, no Wine objects; the path as the host
         * would choose it. */
        char path[256];
        if (!control && config_path) {
            if (!(cfg = fx_config_load(config_path, err, sizeof(err)))) {
                fprintf(stderr, "fwxhost: %s\n", err);
                return 2;
            }
            control = cfg->host.control;
        }
        if (!control) {
            fx_ctl_default_path(path, sizeof(path));
            control = path;
        }
        if (fx_ctl_query(control, "stats\n", 1, 10000, err, sizeof(err)) != 0) {
            fprintf(stderr, "fwxhost: --stats: %s\n", err);
            return 2;
        }
        fx_config_free(cfg);
        return 0;
    }

    /* Under the supervisor: the sockets and configuration it hands down
     * (fxinherit.h), before anything reads the configuration. */
    int sup_fd = fx_supervisor_socket();
    if (sup_fd >= 0 && fx_inherit_receive(sup_fd, 30000, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: %s\n", err);
        return 2;
    }

    if (config_path) {
        if (listen || target || nfilters) {
            fprintf(stderr, "fwxhost: --config cannot be combined with --filter/--listen/--target\n");
            return 2;
        }
        /* Under the supervisor: the text it validated (fxinherit.h). */
        if (!(cfg = fx_config_load_as_handed(config_path, err, sizeof(err)))) {
            fprintf(stderr, "fwxhost: %s\n", err);
            return 2;
        }
    } else {
        if (!listen || !target) {
            fprintf(stderr, "fwxhost: need --config FILE, or --listen and --target (see --help)\n");
            return 2;
        }
        cfg = fx_config_new_empty();
        int n = 0;
        for (int i = 1; cfg && i < argc; i++) {
            if (strcmp(argv[i], "--filter"))
                continue;
            char name[32], *spec = strdup(argv[++i]), *eq = strchr(spec, '=');
            if (eq)
                *eq++ = 0;
            /* Logs name a filter by its DLL's base name ("passthrough"); a
             * DLL given twice gets "-2", "-3", ... */
            const char *base = strrchr(spec, '/') ? strrchr(spec, '/') + 1 : spec;
            int len = (int)strcspn(base, ".");
            snprintf(name, sizeof(name), "%.*s", len > 24 ? 24 : len, base);
            ++n;
            for (size_t k = 0, dup = 2; k < cfg->nfilters; k++)
                if (!strcmp(cfg->filters[k].name, name) ||
                    (dup > 2 && !strncmp(cfg->filters[k].name, name, strlen(name))))
                    snprintf(name, sizeof(name), "%.*s-%zu", len > 24 ? 24 : len, base, dup++);
            if (fx_config_add_filter(cfg, name, spec, eq, err, sizeof(err)) != 0) {
                fprintf(stderr, "fwxhost: --filter %s: %s\n", argv[i], err);
                return 2;
            }
            free(spec);
        }
        if (!cfg || fx_config_add_rule(cfg, "cmdline", "publish", listen, target, NULL, err,
                                       sizeof(err)) != 0) {
            fprintf(stderr, "fwxhost: %s\n", cfg ? err : "out of memory");
            return 2;
        }
    }
    if (workers && fx_config_set(cfg, "host", "workers", workers, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: --workers: %s\n", err);
        return 2;
    }
    if (trace && fx_config_set(cfg, "host", "trace", trace, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: --trace: %s\n", err);
        return 2;
    }
    if (abi_file && fx_config_include(cfg, abi_file, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: --abi: %s\n", err);
        return 2;
    }
    if (record && fx_config_set(cfg, "host", "record", record, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: --record: %s\n", err);
        return 2;
    }
    if (user && fx_config_set(cfg, "host", "user", user, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: --user: %s\n", err);
        return 2;
    }
    if (fx_config_check(cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: %s\n", err);
        return 2;
    }
    unsigned reload_drain = cfg->host.reload_drain;
    if (cfg->host.record && access(cfg->host.record, W_OK | X_OK) != 0) {
        fprintf(stderr, "fwxhost: record directory %s: %s (it must exist and be writable)\n",
                cfg->host.record, strerror(errno));
        return 2;
    }
    /* Code and settings anyone could have replaced are refused
     * (docs/security.md). */
    if (config_path && fx_path_check_safe(config_path, "configuration file", err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: %s\n", err);
        return 2;
    }
    for (size_t k = 0; k < cfg->nfilters; k++) {
        if (cfg->filters[k].enabled &&
            fx_path_check_safe(cfg->filters[k].path, "filter DLL", err, sizeof(err)) != 0) {
            fprintf(stderr, "fwxhost: filter %s: %s\n", cfg->filters[k].name, err);
            return 2;
        }
    }
    if (config_path && cfg->host.log_level > 0 && !strcmp(level_text, "notice"))
        fx_log_set_level(cfg->host.log_level);

    if (pipe(signal_pipe) != 0) {
        fprintf(stderr, "fwxhost: pipe: %s\n", strerror(errno));
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    CoInitializeEx(NULL, COINIT_MULTITHREADED);
    fx_log(FX_LOG_INFO, "fwxshim %s (%s-bit host) starting", FWX_VERSION,
           sizeof(void *) == 8 ? "64" : "32");
    if (host_start(&host, cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: %s\n", err);
        host_stop(&host, 0);
        return 2;
    }
    if (stats_server_start(&host, control, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: %s\n", err);
        host_stop(&host, 0);
        return 2;
    }
    /* Listeners and the control socket are bound: give up root for good
     * (every thread; fxsec.c checks it stuck). A failure here exits at
     * once, never serving with half-changed ids. */
    if (cfg->host.user) {
        if (fx_drop_privileges(cfg->host.user, err, sizeof(err)) != 0) {
            fprintf(stderr, "fwxhost: --user %s: %s\n", cfg->host.user, err);
            fflush(stderr);
            _exit(2);
        }
        fx_log(FX_LOG_NOTICE, "running as user %s (uid %u, gid %u) from now on", cfg->host.user,
               (unsigned)getuid(), (unsigned)getgid());
    }
    for (int r = 0; r < host.nrules; r++) {
        char l[64], t[64];
        fx_addr_format(&host.rules[r].conf->listen, host.rules[r].conf->listen_len, l, sizeof(l));
        if (host.rules[r].conf->type == FX_RULE_OUTBOUND)
            snprintf(t, sizeof(t), "each connection's original destination");
        else
            fx_addr_format(&host.rules[r].conf->target, host.rules[r].conf->target_len, t, sizeof(t));
        fprintf(stderr, "fwxhost: ready: rule %s listening on %s -> %s, %d filter(s), %d worker(s)\n",
                host.rules[r].conf->name, l, t, host.nfilters, host.nworkers);
    }
    fflush(stderr);
    /* Under the supervisor: tell it we serve (it then retires an older
     * worker), and listen on its socket for "drain". */
    int control_fd = sup_fd;
    if (control_fd >= 0 && write(control_fd, "ready", 5) != 5)
        fx_log(FX_LOG_WARN, "cannot tell the supervisor we are ready: %s", strerror(errno));

    char sig = 0;
    unsigned stop_drain = drain;
    for (;;) {
        struct pollfd p[2] = { { signal_pipe[0], POLLIN, 0 }, { control_fd, POLLIN, 0 } };
        int n = poll(p, control_fd >= 0 ? 2 : 1, 500);
        char what[256];
        if (n == 0 && host_all_workers_stuck(&host, what, sizeof(what))) {
            /* Nothing left to serve with, and no way to stop cleanly: end
             * here; the supervisor, holding the listening sockets, starts
             * a new worker process (HOST-501). */
            fx_log(FX_LOG_ERROR, "all %d worker(s) are stuck in filter code (last: %s); "
                   "exiting with status 3", host.nworkers, what);
            fflush(stderr);
            TerminateProcess(GetCurrentProcess(), 3);
            _exit(3);
        }
        if (n <= 0)
            continue;
        if (control_fd >= 0 && p[1].revents) {
            char cmd[64];
            ssize_t k = read(control_fd, cmd, sizeof(cmd) - 1);   /* one message */
            if (k > 0 && !strncmp(cmd, "drain", 5)) {
                /* A newer worker serves the listening sockets now. */
                stop_drain = reload_drain;
                fx_log(FX_LOG_NOTICE, "supervisor: a newer worker took over; no longer accepting, "
                       "%ld live connection(s) finish here (up to %u s)",
                       (long)host.live_connections, stop_drain);
                stats_server_stop();
                host_stop_accepting(&host);
                break;
            }
            if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN)) {
                fx_log(FX_LOG_ERROR, "supervisor gone (its socket closed): stopping");
                break;
            }
            continue;
        }
        if (!p[0].revents || read(signal_pipe[0], &sig, 1) != 1)
            continue;
        if (sig != SIGHUP)
            break;
        fx_log(FX_LOG_WARN, control_fd >= 0 ? "SIGHUP: reload is the supervisor's: send SIGHUP to "
               "its pid (the fwxhost process that started this one)" :
               "SIGHUP: this host runs without a supervisor (--no-supervisor): reload is not "
               "available; restart it to apply changes");
    }
    if (sig)
        fx_log(FX_LOG_NOTICE, "signal %d: stopping (draining up to %u s)", sig, drain);
    stats_server_stop();
    host_stop(&host, stop_drain);
    if (host.stuck_workers) {
        /* Their threads are still inside filter code: no clean-up that
         * could meet them; ExitProcess ends them. */
        fx_log(FX_LOG_ERROR, "stopped with %d worker(s) stuck in filter code: %ld connections "
               "served, %ld denied", host.stuck_workers, (long)host.total_connections,
               (long)host.denied_connections);
        return 3;
    }
    fx_log(FX_LOG_NOTICE, "stopped: %ld connections served, %ld denied", (long)host.total_connections,
           (long)host.denied_connections);
    fx_config_free(cfg);
    CoUninitialize();
    return 0;
}
