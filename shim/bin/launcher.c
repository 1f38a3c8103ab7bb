/*
 * launcher.c — the native front door of each fwxshim program (fwxinfo,
 * fwxhost, fwxreplay). A 32-bit filter DLL loads only into a 32-bit
 * process, so the launcher reads the PE machine field of every filter DLL
 * named on the command line (or in --config), picks the i386 or x86_64
 * winelib flavour of the program, and execs it under the matching Wine
 * loader with the arguments unchanged.
 *
 * fwxhost: unless --no-supervisor (or --stats, --help, --version), the
 * launcher stays as the native supervisor (supervisor.c, FWX_SUPERVISOR)
 * and runs the exec in a child: the worker process.
 *
 * fwxreplay: a SCRIPT without --filter takes the flavour of the script's
 * own 'filter' lines; a directory of scripts runs as a suite
 * (replaysuite.c, built into this launcher only, FWX_REPLAY_SUITE).
 *
 * FWX_PROGRAM, FWX_PKGLIBEXECDIR and FWX_WINE_DIR come from the build.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fxconf.h"
#include "fxinherit.h"
#include "fxpcap.h"
#include "fxpe.h"

enum flavour { FLAVOUR_NONE, FLAVOUR_X86, FLAVOUR_X64 };

static const char *flavour_name(enum flavour f)
{
    return f == FLAVOUR_X86 ? "x86" : "x64";
}

/* Decide the flavour one DLL needs; on error print one line and exit 2. */
static enum flavour dll_flavour(const char *path)
{
    fx_pe_info info;
    char err[512];

    if (fx_pe_read_file(path, &info, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", FWX_PROGRAM, err);
        exit(2);
    }
    enum flavour f = FLAVOUR_NONE;
    if (info.machine == 0x14c)
        f = FLAVOUR_X86;
    else if (info.machine == 0x8664)
        f = FLAVOUR_X64;
    else {
        fprintf(stderr, "%s: %s: PE machine %s is neither x86 nor x64; fwxshim cannot load it\n",
                FWX_PROGRAM, path, fx_pe_machine_name(info.machine));
        fx_pe_info_free(&info);
        exit(2);
    }
    fx_pe_info_free(&info);
    return f;
}

static void merge(enum flavour *have, const char **have_from, enum flavour f, const char *from)
{
    if (*have != FLAVOUR_NONE && *have != f) {
        fprintf(stderr, "%s: %s is %s but %s is %s: one host process runs filters of one "
                "architecture; run two hosts instead\n", FWX_PROGRAM,
                *have_from, flavour_name(*have), from, flavour_name(f));
        exit(2);
    }
    *have = f;
    *have_from = from;
}

/* "DLL=CLSID" names the DLL part. */
static const char *dll_part(const char *arg, char *buf, size_t len)
{
    const char *eq = strchr(arg, '=');
    if (!eq)
        return arg;
    snprintf(buf, len, "%.*s", (int)(eq - arg), arg);
    return buf;
}

static void flavour_from_config(const char *path, enum flavour *have, const char **from)
{
    char err[1024];
    fx_config *cfg = fx_config_load_as_handed(path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s: %s\n", FWX_PROGRAM, err);
        exit(2);
    }
    for (size_t i = 0; i < cfg->nfilters; i++) {
        if (!cfg->filters[i].enabled)
            continue;
        char *p = strdup(cfg->filters[i].path);
        merge(have, from, dll_flavour(p), p);
    }
    fx_config_free(cfg);
}

static int find_program(enum flavour f, char *out, size_t len)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(out, len, "%s/%s-%s.exe.so", self, FWX_PROGRAM, flavour_name(f));
            if (access(out, R_OK) == 0)
                return 0;
        }
    }
    snprintf(out, len, "%s/%s-%s.exe.so", FWX_PKGLIBEXECDIR, FWX_PROGRAM, flavour_name(f));
    return access(out, R_OK);
}

#ifdef FWX_REPLAY_SUITE
#include <sys/stat.h>
#include "fxscript.h"
#include "replaysuite.h"

/* fwxreplay SCRIPT without --filter: the flavour of the script's filter
 * lines. A script that does not parse is left to fwxreplay to report. */
static void flavour_from_script(const char *path, enum flavour *have, const char **from)
{
    char err[1024];
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    fx_script *s = fx_script_load(path, err, sizeof(err));
    if (!s)
        return;
    for (size_t i = 0; i < s->nfilters; i++) {
        char *p = strdup(s->filters[i].path);
        merge(have, from, dll_flavour(p), p);
    }
    fx_script_free(s);
}
#endif

/* Picks the flavour and finds the program and its Wine loader; on any
 * problem prints one line and returns 2 (or exits 2). */
static int resolve(int argc, char **argv, char *prog, char *loader)
{
    enum flavour have = FLAVOUR_NONE;
    const char *from = NULL;
    char buf[PATH_MAX];
    int positional_dlls = !strcmp(FWX_PROGRAM, "fwxinfo");
    const char *script = NULL;
    int filter_args = 0;

    /* fwxhost --stats only talks to a running host: no filter is loaded,
     * so the x64 flavour does whatever the filters are; the config is read
     * for its control path only (by fwxhost). */
    int stats_only = 0;
    for (int i = 1; i < argc && !strcmp(FWX_PROGRAM, "fwxhost"); i++)
        if (!strcmp(argv[i], "--stats"))
            stats_only = 1;
    for (int i = 1; i < argc && !stats_only; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h") || !strcmp(a, "--version"))
            break;
        if ((!strcmp(a, "--filter") || !strcmp(a, "--config") || !strcmp(a, "--install")) &&
            i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(a, "--config"))
                flavour_from_config(v, &have, &from);
            else {
                char *p = strdup(dll_part(v, buf, sizeof(buf)));
                merge(&have, &from, dll_flavour(p), p);
                filter_args++;
            }
        } else if (!strncmp(a, "--filter=", 9)) {
            char *p = strdup(dll_part(a + 9, buf, sizeof(buf)));
            merge(&have, &from, dll_flavour(p), p);
            filter_args++;
        } else if (!strncmp(a, "--config=", 9)) {
            flavour_from_config(a + 9, &have, &from);
        } else if (a[0] != '-' && positional_dlls) {
            char *p = strdup(dll_part(a, buf, sizeof(buf)));
            merge(&have, &from, dll_flavour(p), p);
        } else if (a[0] != '-') {
            script = a;
        } else if (a[0] == '-' && a[1] == '-' && i + 1 < argc && !strchr(a, '=') &&
                   (!strcmp(a, "--clsid") || !strcmp(a, "--log-level") || !strcmp(a, "--trace") || !strcmp(a, "--abi") ||
                    !strcmp(a, "--chunking") || !strcmp(a, "--timeout") || !strcmp(a, "--junit") ||
                    !strcmp(a, "--control") || !strcmp(a, "--record") || !strcmp(a, "--pcap") ||
                    !strcmp(a, "--stream") || !strcmp(a, "--to-script"))) {
            i++; /* option with a separate value: skip the value */
        }
    }
#ifdef FWX_REPLAY_SUITE
    /* --filter replaces the script's filter lines, so it decides alone. */
    if (script && !filter_args)
        flavour_from_script(script, &have, &from);
#else
    (void)script;
    (void)filter_args;
#endif
    if (have == FLAVOUR_NONE)
        have = FLAVOUR_X64;

    if (find_program(have, prog, PATH_MAX) != 0) {
        fprintf(stderr, "%s: the %s flavour is not installed (%s: %s)%s\n", FWX_PROGRAM,
                flavour_name(have), prog, strerror(errno),
                have == FLAVOUR_X86 ? "; was fwxshim configured with --disable-i386?" : "");
        return 2;
    }
    snprintf(loader, PATH_MAX, "%s%s", FWX_WINE_DIR, have == FLAVOUR_X86 ? "wine" : "wine64");
    if (access(loader, X_OK) != 0) {
        fprintf(stderr, "%s: Wine loader %s: %s%s\n", FWX_PROGRAM, loader, strerror(errno),
                have == FLAVOUR_X86 ? " (install wine32:i386 for 32-bit filters)" : "");
        return 2;
    }
    return 0;
}

static int launch(int argc, char **argv)
{
    char prog[PATH_MAX], loader[PATH_MAX];
    if (resolve(argc, argv, prog, loader) != 0)
        return 2;
    /* Wine's own debug chatter is noise for operators; keep theirs if set. */
    setenv("WINEDEBUG", getenv("WINEDEBUG") ? getenv("WINEDEBUG") : "-all", 1);

    char **nargv = calloc((size_t)argc + 2, sizeof(*nargv));
    if (!nargv)
        return 2;
    nargv[0] = loader;
    nargv[1] = prog;
    for (int i = 1; i < argc; i++)
        nargv[i + 1] = argv[i];
    execv(loader, nargv);
    fprintf(stderr, "%s: exec %s: %s\n", FWX_PROGRAM, loader, strerror(errno));
    return 2;
}

#ifdef FWX_REPLAY_SUITE
/* fwxreplay --pcap FILE --list | --to-script OUT: no filter runs, so no
 * Wine: the core does it here. -1 when this is not such a run. */
static int pcap_native(int argc, char **argv)
{
    const char *pcap = NULL, *to_script = NULL;
    unsigned long stream = 0;
    int list = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return -1;
        if (!strcmp(argv[i], "--list"))
            list = 1;
        else if (i + 1 >= argc)
            break;
        else if (!strcmp(argv[i], "--pcap"))
            pcap = argv[++i];
        else if (!strcmp(argv[i], "--to-script"))
            to_script = argv[++i];
        else if (!strcmp(argv[i], "--stream")) {
            char *end;
            const char *v = argv[++i];
            stream = strtoul(v, &end, 10);
            if (!*v || *end || stream < 1 || stream > FX_PCAP_MAX_FLOWS)
                return -1;      /* the program says what is wrong */
        } else if (!strcmp(argv[i], "--filter") || !strcmp(argv[i], "--chunking") ||
                   !strcmp(argv[i], "--timeout") || !strcmp(argv[i], "--log-level")) {
            i++;
        }
    }
    if (!pcap || (!list && !to_script))
        return -1;
    int status = 2;
    fx_script_free(fx_pcap_cli(pcap, stream, list, to_script, argc, argv, &status));
    return status;
}
#endif

#ifdef FWX_SUPERVISOR
#include "supervisor.h"
#endif

int main(int argc, char **argv)
{
#ifdef FWX_SUPERVISOR
    /* fwxhost: a native supervisor holds the sockets and runs the Wine
     * host as its worker process (supervisor.c). */
    if (fwx_supervise_wanted(argc, argv)) {
        /* The filter DLLs' checks first: their errors come before any
         * socket is bound (the worker repeats them when it starts). */
        char prog[PATH_MAX], loader[PATH_MAX];
        if (resolve(argc, argv, prog, loader) != 0)
            return 2;
        return fwx_supervise(argc, argv, launch);
    }
#endif
#ifdef FWX_REPLAY_SUITE
    int native = pcap_native(argc, argv);
    if (native >= 0)
        return native;
    /* fwxreplay DIR: one process per script, TAP and JUnit (replaysuite.c). */
    int suite = fwx_replay_suite_wanted(argc, argv);
    if (suite)
        return fwx_replay_suite(argc, argv, launch);
#endif
    return launch(argc, argv);
}
