/*
 * supervisor.c — fwxhost's native supervisor (built into the fwxhost
 * launcher only). It owns the process model of the service:
 *
 *   - binds every listening socket of the configuration (each rule's, the
 *     control socket, the metrics port) itself, so a port in use is one
 *     line and exit status 2 before any Wine process starts;
 *   - starts the Wine worker (the launcher's launch(), in a child) and hands
 *     it the sockets and the configuration text over a socket pair
 *     (SCM_RIGHTS, fxinherit.h), which then carries "ready" and "drain";
 *   - forwards SIGTERM/SIGINT and exits with the worker's status;
 *   - restarts a worker that exits without being asked (status 3: all its
 *     threads stuck in filter code; a crash), with back-off and at most
 *     [host] restart-limit restarts a minute, while the sockets stay open:
 *     clients queue in the backlog and the next worker serves them;
 *   - on SIGHUP re-reads the configuration: an invalid one is refused with
 *     its file:line and the running worker goes on; a valid one gets any
 *     new sockets and a new worker; once that worker is ready the old one
 *     is told "drain" on the socket pair: it stops accepting, finishes its
 *     live sessions (at most [host] reload-drain seconds) and exits.
 *
 * Single-threaded: one poll loop over a signalfd and the workers' ready
 * pipes. Nothing here loads filter code.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fxconf.h"
#include "fxctl.h"
#include "fxinherit.h"
#include "fxloop.h"
#include "fxlog.h"
#include "fxnet.h"
#include "fxudp.h"
#include "supervisor.h"

#define MAX_SOCKS 128
#define MAX_WORKERS 16          /* the serving one, a new one, draining ones */
#define READY_TIMEOUT_MS 120000 /* Wine start, FilterInit of every filter */

/* The configurations a socket belongs to: the serving one, a reload's. */
#define USE_CUR 1u
#define USE_PEND 2u

/* A listening socket, kept across workers while some configuration uses it. */
struct sock {
    char key[128];      /* "ADDR:PORT", "@metrics ADDR:PORT", "@control PATH" */
    char env_key[80];   /* its key in the handoff (fxinherit.h) */
    int fd;
    unsigned uses;      /* USE_CUR, USE_PEND: which configurations need it */
    struct fx_ctl_file file;   /* a control socket file, to remove only our own */
    char *path;
};

enum wstate { W_FREE, W_STARTING, W_SERVING, W_DRAINING };

struct worker {
    enum wstate state;
    pid_t pid;
    unsigned use;       /* the sockets it was handed: USE_CUR or USE_PEND */
    int ready_fd;       /* the socket pair while waiting for "ready", else -1 */
    int control_fd;     /* the socket pair (fxinherit.h); owns it */
    uint64_t started;
};

static struct {
    int argc;
    char **argv;
    int (*launch)(int, char **);
    const char *config_path, *listen, *target, *control_opt;
    unsigned drain;
    fx_config *cfg;             /* the serving configuration */
    fx_config *pending_cfg;     /* a reload's, until its worker is ready */
    int cfg_fd, pending_cfg_fd; /* their text (memfd), handed to workers */
    struct sock socks[MAX_SOCKS];
    int nsocks;
    struct worker workers[MAX_WORKERS];
    struct worker *serving;     /* or NULL while (re)starting */
    struct worker *pending;     /* a reload's new worker */
    uint64_t restarts[1000];    /* times of recent restarts (ms) */
    unsigned nrestarts;
    uint64_t restart_at;        /* 0: none scheduled */
    int stopping;
    uint64_t kill_at;
    int status;                 /* the exit status once stopped */
    int ever_served;
    char no_control[300];       /* why the default control socket is missing */
} S;

static const char *describe(int status, char *buf, size_t len)
{
    if (WIFEXITED(status)) {
        int c = WEXITSTATUS(status);
        snprintf(buf, len, "exited with status %d%s", c,
                 c == 3 ? " (all its workers stuck in filter code)" :
                 c == 2 ? " (configuration or start-up error)" : "");
    } else if (WIFSIGNALED(status)) {
        snprintf(buf, len, "was killed by signal %d (%s)%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
    } else {
        snprintf(buf, len, "ended with wait status %#x", status);
    }
    return buf;
}

/* ------------------------------------------------------------ config */

/* Reads path into a memfd and parses that: the text a worker gets is then
 * the text validated here, even if the file changes before a restart.
 * The config, with *fd set, or NULL with one line in err. */
static fx_config *config_snapshot(const char *path, int *fd, char *err, size_t errlen)
{
    char buf[65536];
    fx_config *cfg = NULL;
    ssize_t n;
    int in = open(path, O_RDONLY | O_CLOEXEC);
    int mfd = memfd_create("fwxhost.conf", MFD_CLOEXEC);

    *fd = -1;
    if (in < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    if (mfd < 0) {
        snprintf(err, errlen, "%s: memfd_create: %s", path, strerror(errno));
        goto out;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(mfd, buf, (size_t)n) != n) {
            snprintf(err, errlen, "%s: copying: %s", path, strerror(errno));
            goto out;
        }
    if (n < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    if ((cfg = fx_config_load_fd(mfd, path, err, errlen))) {
        *fd = mfd;
        mfd = -1;
    }
out:
    if (in >= 0)
        close(in);
    if (mfd >= 0)
        close(mfd);
    return cfg;
}

/* ------------------------------------------------------------ sockets */

static struct sock *sock_find(const char *key)
{
    for (int i = 0; i < S.nsocks; i++)
        if (S.socks[i].fd >= 0 && !strcmp(S.socks[i].key, key))
            return &S.socks[i];
    return NULL;
}

static struct sock *sock_new(const char *key, const char *env_key, int fd)
{
    struct sock *s = NULL;
    for (int i = 0; i < S.nsocks && !s; i++)
        if (S.socks[i].fd < 0)
            s = &S.socks[i];
    if (!s && S.nsocks < MAX_SOCKS)
        s = &S.socks[S.nsocks++];
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    snprintf(s->key, sizeof(s->key), "%s", key);
    snprintf(s->env_key, sizeof(s->env_key), "%s", env_key);
    s->fd = fd;
    return s;
}

static void sock_close(struct sock *s)
{
    close(s->fd);
    s->fd = -1;
    if (s->path) {
        fx_ctl_file_unlink(s->path, &s->file);
        free(s->path);
        s->path = NULL;
    }
}

/* Closes what neither the serving nor a pending configuration uses (a
 * worker that still drains keeps its own dups). */
static void socks_prune(void)
{
    for (int i = 0; i < S.nsocks; i++)
        if (S.socks[i].fd >= 0 && !S.socks[i].uses) {
            fx_log(FX_LOG_INFO, "supervisor: closing %s (no longer in the configuration)",
                   S.socks[i].key);
            sock_close(&S.socks[i]);
        }
}

/* Every socket cfg needs, reused or bound, marked with use. 0, or -1 with
 * one line in err (the caller then clears use and calls socks_prune). */
static int socks_bind(fx_config *cfg, unsigned use, char *err, size_t errlen)
{
    char text[FX_INHERIT_KEYLEN], key[160], why[256];
    struct sock *s;

    for (size_t r = 0; r < cfg->nrules; r++) {
        fx_rule_conf *rc = &cfg->rules[r];
        int udp = rc->protocol == FX_PROTO_UDP;
        fx_inherit_rule_key(rc, text);
        if (!(s = sock_find(text))) {
            int fd = !udp ? fx_tcp_listen(&rc->listen, rc->listen_len, 1024, 0, why, sizeof(why))
                   : rc->type == FX_RULE_OUTBOUND
                         ? fx_udp_bind_transparent(&rc->listen, rc->listen_len, why, sizeof(why))
                         : fx_udp_bind(&rc->listen, rc->listen_len, why, sizeof(why));
            if (fd < 0) {
                if (cfg->path && rc->listen_line)
                    snprintf(err, errlen, "%s:%d: rule %s: %s", cfg->path, rc->listen_line,
                             rc->name, why);
                else
                    snprintf(err, errlen, "rule %s: %s", rc->name, why);
                return -1;
            }
            if (!(s = sock_new(text, text, fd))) {
                close(fd);
                snprintf(err, errlen, "too many listening sockets (at most %d)", MAX_SOCKS);
                return -1;
            }
        }
        s->uses |= use;
    }
    if (cfg->host.has_metrics) {
        fx_addr_format(&cfg->host.metrics, cfg->host.metrics_len, text, sizeof(text));
        snprintf(key, sizeof(key), "@metrics %s", text);
        if (!(s = sock_find(key))) {
            int fd = fx_tcp_listen(&cfg->host.metrics, cfg->host.metrics_len, 16, 0, why, sizeof(why));
            if (fd < 0) {
                snprintf(err, errlen, "metrics: %s", why);
                return -1;
            }
            if (!(s = sock_new(key, "@metrics", fd))) {
                close(fd);
                snprintf(err, errlen, "too many listening sockets");
                return -1;
            }
        }
        s->uses |= use;
    }
    char path[256];
    const char *p = S.control_opt ? S.control_opt : cfg->host.control;
    int is_default = !p;
    if (is_default) {
        fx_ctl_default_path(path, sizeof(path));
        p = path;
    }
    snprintf(key, sizeof(key), "@control %s", p);
    if (!(s = sock_find(key))) {
        int fd = fx_ctl_bind_unix(p, is_default, why, sizeof(why));
        if (fd < 0 && is_default) {
            /* The default is best effort, as without a supervisor; the
             * worker says so once its filters are up (FWX_NO_CONTROL). */
            snprintf(S.no_control, sizeof(S.no_control), "%s", why);
            return 0;
        }
        if (fd < 0) {
            snprintf(err, errlen, "%s", why);
            return -1;
        }
        S.no_control[0] = 0;
        if (!(s = sock_new(key, "@control", fd))) {
            close(fd);
            snprintf(err, errlen, "too many listening sockets");
            return -1;
        }
        s->path = strdup(p);
        fx_ctl_file_note(p, &s->file);
    }
    s->uses |= use;
    return 0;
}

/* ------------------------------------------------------------ workers */

static struct worker *worker_slot(void)
{
    for (int i = 0; i < MAX_WORKERS; i++)
        if (S.workers[i].state == W_FREE)
            return &S.workers[i];
    return NULL;
}

static int live_workers(void)
{
    int n = 0;
    for (int i = 0; i < MAX_WORKERS; i++)
        n += S.workers[i].state != W_FREE;
    return n;
}

/* Clears use from every socket (a refused or failed reload). */
static void socks_unuse(unsigned use)
{
    for (int i = 0; i < S.nsocks; i++)
        S.socks[i].uses &= ~use;
}

static struct worker *worker_start(unsigned use)
{
    struct worker *w = worker_slot();
    const char *keys[FX_INHERIT_MAX];
    int fds[FX_INHERIT_MAX], n = 0, sv[2];
    int cfd = use == USE_PEND ? S.pending_cfg_fd : S.cfg_fd;

    if (!w) {
        fx_log(FX_LOG_ERROR, "supervisor: too many worker processes; not starting another");
        return NULL;
    }
    for (int i = 0; i < S.nsocks && n < FX_INHERIT_MAX - 1; i++)
        if (S.socks[i].fd >= 0 && (S.socks[i].uses & use)) {
            keys[n] = S.socks[i].env_key;
            fds[n++] = S.socks[i].fd;
        }
    if (cfd >= 0) {
        keys[n] = "@config";
        fds[n++] = cfd;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        fx_log(FX_LOG_ERROR, "supervisor: socketpair: %s", strerror(errno));
        return NULL;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fx_log(FX_LOG_ERROR, "supervisor: fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return NULL;
    }
    if (pid == 0) {
        char num[16];
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* The worker must not outlive us (SIGKILL of the supervisor). */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() == 1)
            _exit(1);
        /* Only the socket pair's end crosses the exec (fxinherit.h). */
        fcntl(sv[1], F_SETFD, 0);
        snprintf(num, sizeof(num), "%d", sv[1]);
        setenv(FX_SUPERVISOR_ENV, num, 1);
        if (S.no_control[0])
            setenv("FWX_NO_CONTROL", S.no_control, 1);
        if (cfd >= 0)
            fx_inherit_set("@config", cfd);     /* the launcher's flavour choice */
        _exit(S.launch(S.argc, S.argv));
    }
    close(sv[1]);
    if (fx_inherit_send(sv[0], keys, fds, n) != 0)
        fx_log(FX_LOG_ERROR, "supervisor: handing the sockets to worker pid %d: %s", (int)pid,
               strerror(errno));   /* it exits 2 for want of them */
    memset(w, 0, sizeof(*w));
    w->state = W_STARTING;
    w->pid = pid;
    w->use = use;
    w->ready_fd = sv[0];        /* polled until "ready" */
    w->control_fd = sv[0];      /* the same socket; owns it */
    w->started = fx_now_ms();
    fx_log(FX_LOG_INFO, "supervisor: started worker pid %d", (int)pid);
    return w;
}

static void worker_free(struct worker *w)
{
    if (w->control_fd >= 0)
        close(w->control_fd);
    if (S.serving == w)
        S.serving = NULL;
    if (S.pending == w)
        S.pending = NULL;
    w->state = W_FREE;
    w->pid = 0;
    w->ready_fd = w->control_fd = -1;
}

static void worker_drain(struct worker *w)
{
    w->state = W_DRAINING;
    w->ready_fd = -1;
    if (send(w->control_fd, "drain", 5, MSG_NOSIGNAL) != 5)
        fx_log(FX_LOG_WARN, "supervisor: cannot tell worker pid %d to drain (%s); stopping it",
               (int)w->pid, strerror(errno));
    close(w->control_fd);   /* end of file after "drain": it stops either way */
    w->control_fd = -1;
}

/* ------------------------------------------------------------ restarts */

static void stop_all(int sig)
{
    for (int i = 0; i < MAX_WORKERS; i++)
        if (S.workers[i].state != W_FREE)
            kill(S.workers[i].pid, sig);
}

static void begin_stop(int status)
{
    if (S.stopping)
        return;
    S.stopping = 1;
    S.status = status;
    S.restart_at = 0;
    stop_all(SIGTERM);
    /* The worker drains, ends filters' sockets (5 s), notices stuck
     * threads (hang-timeout); past all of that, SIGKILL. */
    unsigned hang = S.cfg ? S.cfg->host.hang_timeout : 30;
    S.kill_at = fx_now_ms() + ((uint64_t)S.drain + hang + 20) * 1000;
}

static void schedule_restart(void)
{
    uint64_t now = fx_now_ms();
    unsigned limit = S.cfg->host.restart_limit, kept = 0;

    for (unsigned i = 0; i < S.nrestarts; i++)
        if (now - S.restarts[i] < 60000)
            S.restarts[kept++] = S.restarts[i];
    S.nrestarts = kept;
    if (limit == 0 || S.nrestarts >= limit) {
        fx_log(FX_LOG_ERROR, "supervisor: giving up: %u restart(s) within a minute "
               "([host] restart-limit = %u); exiting with status 1", S.nrestarts, limit);
        begin_stop(1);
        return;
    }
    uint64_t delay = (uint64_t)S.cfg->host.restart_delay * 1000;
    for (unsigned i = 0; i < S.nrestarts && delay < 30000; i++)
        delay *= 2;
    if (delay > 30000)
        delay = 30000;
    S.restarts[S.nrestarts++] = now;
    S.restart_at = now + (delay ? delay : 1);
    fx_log(FX_LOG_NOTICE, "supervisor: restarting the worker in %llu ms (restart %u of at most %u "
           "a minute); the listening sockets stay open", (unsigned long long)delay, S.nrestarts,
           limit);
}

/* ------------------------------------------------------------ reload */

static void reload(void)
{
    char err[2048];
    fx_config *cfg;
    int cfd = -1;

    if (S.stopping)
        return;
    if (S.pending) {
        fx_log(FX_LOG_WARN, "supervisor: SIGHUP: a reload is already in progress (worker pid %d "
               "starting); ignored", (int)S.pending->pid);
        return;
    }
    if (!S.serving || S.serving->state != W_SERVING) {
        fx_log(FX_LOG_WARN, "supervisor: SIGHUP: no worker is serving right now (it is being "
               "(re)started); ignored: send SIGHUP again once it serves");
        return;
    }
    if (S.config_path) {
        if (!(cfg = config_snapshot(S.config_path, &cfd, err, sizeof(err)))) {
            fx_log(FX_LOG_ERROR, "supervisor: SIGHUP: %s; keeping the running configuration", err);
            return;
        }
        fx_log(FX_LOG_NOTICE, "supervisor: SIGHUP: %s read: %zu filter(s), %zu rule(s); starting "
               "a new worker", S.config_path, cfg->nfilters, cfg->nrules);
    } else {
        cfg = NULL;     /* the command line: same sockets, the DLLs re-read */
        fx_log(FX_LOG_NOTICE, "supervisor: SIGHUP: no --config; starting a new worker with the "
               "same command line (filter DLLs are loaded again)");
    }
    if (socks_bind(cfg ? cfg : S.cfg, USE_PEND, err, sizeof(err)) != 0) {
        fx_log(FX_LOG_ERROR, "supervisor: SIGHUP: %s; keeping the running configuration", err);
        goto refuse;
    }
    S.pending_cfg_fd = cfd;
    if (!(S.pending = worker_start(USE_PEND)))
        goto refuse;
    S.pending_cfg = cfg;
    return;

refuse:
    fx_config_free(cfg);
    if (cfd >= 0)
        close(cfd);
    S.pending_cfg_fd = -1;
    socks_unuse(USE_PEND);
    socks_prune();
}

/* The pending worker serves: retire the old one. */
static void reload_done(void)
{
    struct worker *old = S.serving;
    S.serving = S.pending;
    S.serving->state = W_SERVING;
    S.pending = NULL;
    if (S.pending_cfg) {
        fx_config_free(S.cfg);
        S.cfg = S.pending_cfg;
        S.pending_cfg = NULL;
        if (S.cfg_fd >= 0)
            close(S.cfg_fd);
        S.cfg_fd = S.pending_cfg_fd;
        S.pending_cfg_fd = -1;
    }
    for (int i = 0; i < S.nsocks; i++)
        S.socks[i].uses = (S.socks[i].uses & USE_PEND) ? USE_CUR : 0;
    if (old) {
        fx_log(FX_LOG_NOTICE, "supervisor: reload done: worker pid %d serves the new configuration; "
               "worker pid %d finishes its live sessions (up to %u s)", (int)S.serving->pid,
               (int)old->pid, S.cfg->host.reload_drain);
        worker_drain(old);
    }
    socks_prune();
}

static void reload_failed(const char *why)
{
    fx_log(FX_LOG_ERROR, "supervisor: reload failed: the new worker %s before it was ready; "
           "worker pid %d keeps serving the previous configuration", why,
           S.serving ? (int)S.serving->pid : -1);
    fx_config_free(S.pending_cfg);
    S.pending_cfg = NULL;
    if (S.pending_cfg_fd >= 0)
        close(S.pending_cfg_fd);
    S.pending_cfg_fd = -1;
    socks_unuse(USE_PEND);
    socks_prune();
    if (!S.serving && !S.restart_at)
        schedule_restart();     /* the old worker died meanwhile */
}

/* ------------------------------------------------------------ events */

static void on_exit_status(pid_t pid, int status)
{
    struct worker *w = NULL;
    char how[160];

    for (int i = 0; i < MAX_WORKERS && !w; i++)
        if (S.workers[i].state != W_FREE && S.workers[i].pid == pid)
            w = &S.workers[i];
    if (!w)
        return;     /* not ours (cannot happen: we start no other child) */
    describe(status, how, sizeof(how));
    if (w == S.pending) {
        worker_free(w);
        if (!S.stopping)
            reload_failed(how);
        return;
    }
    if (w->state == W_DRAINING) {
        fx_log(FX_LOG_NOTICE, "supervisor: old worker pid %d %s", (int)pid, how);
        worker_free(w);
        return;
    }
    /* the serving (or starting) worker */
    int was_serving = w->state == W_SERVING;
    worker_free(w);
    if (S.stopping) {
        if (S.status == 0)
            S.status = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        return;
    }
    if (!S.ever_served) {
        /* The first start failed: the worker said why (one line). */
        S.status = WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : 2;
        if (!WIFEXITED(status))
            fx_log(FX_LOG_ERROR, "supervisor: the worker %s while starting", how);
        S.stopping = 1;
        return;
    }
    fx_log(FX_LOG_ERROR, "supervisor: worker pid %d %s%s", (int)pid, how,
           was_serving ? "" : " while starting");
    if (S.pending) {
        fx_log(FX_LOG_NOTICE, "supervisor: the reload's worker pid %d takes over once ready",
               (int)S.pending->pid);
        return;
    }
    schedule_restart();
}

static void on_ready(struct worker *w)
{
    char buf[64];
    ssize_t n = recv(w->ready_fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0 && !strncmp(buf, "ready", 5)) {
        w->ready_fd = -1;       /* no more polling; control_fd keeps it */
        if (w == S.pending) {
            reload_done();
        } else if (w == S.serving) {
            w->state = W_SERVING;
            if (S.ever_served)
                fx_log(FX_LOG_NOTICE, "supervisor: worker pid %d serves again", (int)w->pid);
            S.ever_served = 1;
        }
        return;
    }
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
        w->ready_fd = -1;       /* it is exiting: SIGCHLD tells how */
}

static int sigfd_open(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* ------------------------------------------------------------ options */

int fwx_supervise_wanted(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--stats") || !strcmp(a, "-h") || !strcmp(a, "--help") ||
            !strcmp(a, "--version") || !strcmp(a, "--no-supervisor"))
            return 0;
    }
    return 1;
}

/* fwxhost's options that take a value and leave the command line
 * supervisable; the supervisor reads some of them, the worker all. Any
 * other option (--install, a typo) runs the worker alone, which then says
 * what is wrong. */
static int supervised_option(const char *a)
{
    static const char *const opts[] = { "--config", "--listen", "--target", "--control",
                                        "--log-level", "--drain", "--workers", "--filter",
                                        "--record", "--trace", "--abi", "--user" };
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
        if (!strcmp(a, opts[i]))
            return 1;
    return 0;
}

/* The options the supervisor needs; everything else is the worker's to
 * check. 0, or -1 when the command line is not one it can supervise (the
 * worker then says what is wrong). */
static int parse(int argc, char **argv, const char **level)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (supervised_option(a)) {
            if (!v)
                return -1;
            i++;
            if (!strcmp(a, "--config"))
                S.config_path = v;
            else if (!strcmp(a, "--listen"))
                S.listen = v;
            else if (!strcmp(a, "--target"))
                S.target = v;
            else if (!strcmp(a, "--control"))
                S.control_opt = v;
            else if (!strcmp(a, "--log-level"))
                *level = v;
            else if (!strcmp(a, "--drain"))
                S.drain = (unsigned)atoi(v);
        } else {
            return -1;
        }
    }
    if (S.config_path && (S.listen || S.target))
        return -1;
    if (!S.config_path && (!S.listen || !S.target))
        return -1;
    return 0;
}

/* ------------------------------------------------------------ main */

int fwx_supervise(int argc, char **argv, int (*launch)(int, char **))
{
    char err[2048];
    const char *level_text = NULL;

    memset(&S, 0, sizeof(S));
    S.argc = argc;
    S.argv = argv;
    S.launch = launch;
    S.drain = 10;
    S.cfg_fd = S.pending_cfg_fd = -1;
    for (int i = 0; i < MAX_WORKERS; i++)
        S.workers[i].ready_fd = S.workers[i].control_fd = -1;
    if (parse(argc, argv, &level_text) != 0)
        return launch(argc, argv);
    int level = fx_log_level_parse(level_text ? level_text : "notice");
    if (level < 0)
        return launch(argc, argv);     /* the worker names the bad level */
    fx_log_init("fwxhost", level);

    if (S.config_path) {
        if (!(S.cfg = config_snapshot(S.config_path, &S.cfg_fd, err, sizeof(err)))) {
            fprintf(stderr, "fwxhost: %s\n", err);
            return 2;
        }
        if (!level_text && S.cfg->host.log_level > 0)
            fx_log_set_level(S.cfg->host.log_level);
    } else {
        S.cfg = fx_config_new_empty();
        if (!S.cfg || fx_config_add_rule(S.cfg, "cmdline", "publish", S.listen, S.target, NULL,
                                         err, sizeof(err)) != 0) {
            fx_config_free(S.cfg);
            return launch(argc, argv);  /* the worker reports it as it always did */
        }
    }
    if (socks_bind(S.cfg, USE_CUR, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxhost: %s\n", err);
        for (int i = 0; i < S.nsocks; i++)
            if (S.socks[i].fd >= 0)
                sock_close(&S.socks[i]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int sfd = sigfd_open();
    if (sfd < 0) {
        fprintf(stderr, "fwxhost: signalfd: %s\n", strerror(errno));
        return 2;
    }
    if (!(S.serving = worker_start(USE_CUR))) {
        fprintf(stderr, "fwxhost: cannot start the worker process\n");
        return 2;
    }

    while (!(S.stopping && live_workers() == 0)) {
        struct pollfd p[1 + MAX_WORKERS];
        struct worker *pw[1 + MAX_WORKERS];
        int np = 0;
        p[np].fd = sfd;
        p[np].events = POLLIN;
        pw[np++] = NULL;
        for (int i = 0; i < MAX_WORKERS; i++)
            if (S.workers[i].state != W_FREE && S.workers[i].ready_fd >= 0) {
                p[np].fd = S.workers[i].ready_fd;
                p[np].events = POLLIN;
                pw[np++] = &S.workers[i];
            }
        uint64_t now = fx_now_ms();
        int timeout = 1000;
        if (S.restart_at)
            timeout = S.restart_at > now ? (int)(S.restart_at - now < 1000 ? S.restart_at - now : 1000) : 0;
        if (poll(p, np, timeout) < 0 && errno != EINTR)
            break;
        for (int i = 1; i < np; i++)
            if (p[i].revents && pw[i]->state != W_FREE && pw[i]->ready_fd == p[i].fd)
                on_ready(pw[i]);
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
            if (si.ssi_signo == SIGCHLD) {
                int status;
                pid_t pid;
                while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
                    on_exit_status(pid, status);
            } else if (si.ssi_signo == SIGHUP) {
                reload();
            } else if (!S.stopping) {
                fx_log(FX_LOG_NOTICE, "supervisor: signal %u: stopping the worker(s)", si.ssi_signo);
                begin_stop(0);
            }
        }
        now = fx_now_ms();
        if (S.restart_at && now >= S.restart_at && !S.stopping) {
            S.restart_at = 0;
            if (!S.pending && !(S.serving = worker_start(USE_CUR))) {
                schedule_restart();
            }
        }
        if (S.pending && now - S.pending->started > READY_TIMEOUT_MS) {
            fx_log(FX_LOG_ERROR, "supervisor: reload: worker pid %d not ready after %d s; killing it",
                   (int)S.pending->pid, READY_TIMEOUT_MS / 1000);
            kill(S.pending->pid, SIGKILL);
        }
        if (S.stopping && S.kill_at && now >= S.kill_at) {
            fx_log(FX_LOG_ERROR, "supervisor: worker(s) still running long after SIGTERM; SIGKILL");
            stop_all(SIGKILL);
            S.kill_at = 0;
        }
    }
    for (int i = 0; i < S.nsocks; i++)
        if (S.socks[i].fd >= 0)
            sock_close(&S.socks[i]);
    fx_config_free(S.cfg);
    fx_config_free(S.pending_cfg);
    close(sfd);
    return S.status;
}
