/*
 * replaysuite.c — fwxreplay DIR (see replaysuite.h): one child per script,
 * each through the launcher's normal path so that every script gets the
 * host flavour of its own filters; TAP on stdout, JUnit XML with --junit.
 */
#define _GNU_SOURCE
#include "replaysuite.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Options of fwxreplay that take a separate value. */
static int takes_value(const char *a)
{
    return !strcmp(a, "--filter") || !strcmp(a, "--chunking") || !strcmp(a, "--timeout") ||
           !strcmp(a, "--log-level") || !strcmp(a, "--junit") || !strcmp(a, "--pcap") ||
           !strcmp(a, "--stream") || !strcmp(a, "--to-script") || !strcmp(a, "--trace");
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int fwx_replay_suite_wanted(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 0;
        if (takes_value(argv[i])) {
            i++;
            continue;
        }
        if (argv[i][0] != '-' && is_dir(argv[i]))
            return 1;
    }
    return 0;
}

static int is_script(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 5 && !strcmp(d->d_name + n - 5, ".fwxs") && d->d_name[0] != '.';
}

static void xml_escape(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if (c < 0x20 && c != '\n' && c != '\t')
                fprintf(f, "?");       /* not allowed in XML 1.0 */
            else
                fputc(c, f);
        }
    }
}

struct result {
    char *name;
    int status;                 /* 0 pass, 1 mismatch, 2 error */
    char *output;
    size_t outlen;
    double seconds;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run_one(int argc, char **argv, const char *dir_arg, const char *path,
                    int (*launch)(int, char **), struct result *r)
{
    int p[2];
    double t0 = now_s();
    r->status = 2;
    if (pipe(p) != 0) {
        r->output = strdup("pipe failed");
        r->outlen = r->output ? strlen(r->output) : 0;
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[1]);
        char **nargv = calloc((size_t)argc + 1, sizeof(*nargv));
        int n = 0;
        nargv[n++] = argv[0];
        for (int i = 1; i < argc; i++) {
            if (!strcmp(argv[i], "--junit")) {
                i++;
                continue;
            }
            if (argv[i] == dir_arg)
                nargv[n++] = (char *)path;
            else
                nargv[n++] = argv[i];
        }
        nargv[n] = NULL;
        _exit(launch(n, nargv));
    }
    close(p[1]);
    size_t cap = 0;
    char buf[4096];
    ssize_t k;
    r->output = NULL;
    r->outlen = 0;
    while ((k = read(p[0], buf, sizeof(buf))) != 0) {
        if (k < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (r->outlen + (size_t)k + 1 > cap) {
            cap = (r->outlen + (size_t)k + 1) * 2;
            char *o = realloc(r->output, cap);
            if (!o)
                break;
            r->output = o;
        }
        memcpy(r->output + r->outlen, buf, (size_t)k);
        r->outlen += (size_t)k;
        r->output[r->outlen] = 0;
    }
    close(p[0]);
    int st = 0;
    if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st))
        r->status = WEXITSTATUS(st) == 0 ? 0 : WEXITSTATUS(st) == 1 ? 1 : 2;
    r->seconds = now_s() - t0;
}

int fwx_replay_suite(int argc, char **argv, int (*launch)(int, char **))
{
    const char *dir = NULL, *junit = NULL;
    int worst = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--junit") && i + 1 < argc) {
            junit = argv[++i];
        } else if (takes_value(argv[i])) {
            i++;
        } else if (argv[i][0] != '-') {
            if (dir || !is_dir(argv[i])) {
                fprintf(stderr, "fwxreplay: give one directory or one script, not '%s' and '%s'\n",
                        dir ? dir : argv[i], dir ? argv[i] : "a directory");
                return 2;
            }
            dir = argv[i];
        }
    }
    struct dirent **names;
    int n = scandir(dir, &names, is_script, alphasort);
    if (n < 0) {
        fprintf(stderr, "fwxreplay: %s: %s\n", dir, strerror(errno));
        return 2;
    }
    if (n == 0) {
        fprintf(stderr, "fwxreplay: %s: no *.fwxs scripts\n", dir);
        free(names);
        return 2;
    }
    struct result *res = calloc((size_t)n, sizeof(*res));
    if (!res)
        return 2;
    printf("1..%d\n", n);
    for (int i = 0; i < n; i++) {
        char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, names[i]->d_name) < 0)
            return 2;
        res[i].name = strdup(names[i]->d_name);
        run_one(argc, argv, dir, path, launch, &res[i]);
        if (res[i].status == 0) {
            printf("ok %d - %s\n", i + 1, res[i].name);
        } else {
            printf("not ok %d - %s (%s)\n", i + 1, res[i].name,
                   res[i].status == 1 ? "differs from its golden file" : "error");
            const char *o = res[i].output ? res[i].output : "";
            while (*o) {
                const char *nl = strchr(o, '\n');
                int len = nl ? (int)(nl - o) : (int)strlen(o);
                printf("#   %.*s\n", len, o);
                o += len + (nl ? 1 : 0);
            }
        }
        fflush(stdout);
        if (res[i].status > worst)
            worst = res[i].status;
        free(path);
    }
    if (junit) {
        FILE *f = fopen(junit, "w");
        if (!f) {
            fprintf(stderr, "fwxreplay: --junit %s: %s\n", junit, strerror(errno));
            worst = 2;
        } else {
            int failures = 0, errors = 0;
            double total = 0;
            for (int i = 0; i < n; i++) {
                failures += res[i].status == 1;
                errors += res[i].status == 2;
                total += res[i].seconds;
            }
            fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
            fprintf(f, "  <testsuite name=\"");
            xml_escape(f, dir, strlen(dir));
            fprintf(f, "\" tests=\"%d\" failures=\"%d\" errors=\"%d\" time=\"%.3f\">\n", n,
                    failures, errors, total);
            for (int i = 0; i < n; i++) {
                fprintf(f, "    <testcase classname=\"fwxreplay\" name=\"");
                xml_escape(f, res[i].name, strlen(res[i].name));
                fprintf(f, "\" time=\"%.3f\"", res[i].seconds);
                if (res[i].status == 0) {
                    fprintf(f, "/>\n");
                    continue;
                }
                const char *tag = res[i].status == 1 ? "failure" : "error";
                fprintf(f, ">\n      <%s message=\"%s\">", tag,
                        res[i].status == 1 ? "differs from its golden file" : "error");
                xml_escape(f, res[i].output ? res[i].output : "", res[i].outlen);
                fprintf(f, "</%s>\n    </testcase>\n", tag);
            }
            fprintf(f, "  </testsuite>\n</testsuites>\n");
            if (fclose(f) != 0)
                worst = 2;
        }
    }
    for (int i = 0; i < n; i++) {
        free(res[i].name);
        free(res[i].output);
        free(names[i]);
    }
    free(names);
    free(res);
    return worst;
}
