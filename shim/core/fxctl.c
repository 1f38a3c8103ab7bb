/*
 * fxctl.c - the control server (fxctl.h): local Unix socket for
 * `fwxhost --stats`, loopback HTTP for Prometheus.
 */
#define _GNU_SOURCE
#include "fxctl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fxnet.h"

struct fx_ctl {
    fx_loop *loop;
    int unix_fd, http_fd;
    char *path;
    struct fx_ctl_file file;   /* the control socket file, when we bound it */
    char metrics_addr[FX_ADDRSTRLEN];
    fx_ctl_render_fn render;
    void *arg;
    int nclients;
    struct ctl_client *clients;     /* every live client, for fx_ctl_free */
};

struct ctl_client {
    struct ctl_client *next, **prev;
    fx_ctl *ctl;
    int fd;
    int http;
    char *req;
    size_t reqlen, reqmax;
    char *out;                      /* the answer, once known */
    size_t outlen, outoff;
    fx_timer *timer;
};

void fx_ctl_default_path(char *buf, size_t len)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (geteuid() == 0)
        snprintf(buf, len, "/run/fwxshim/fwxhost.sock");
    else if (xdg && *xdg)
        snprintf(buf, len, "%s/fwxhost.sock", xdg);
    else
        snprintf(buf, len, "/tmp/fwxhost-%u.sock", (unsigned)geteuid());
}

static int unix_addr(const char *path, struct sockaddr_un *sun, char *err, size_t errlen)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun->sun_path)) {
        snprintf(err, errlen, "control socket path %s is too long (at most %zu bytes)", path,
                 sizeof(sun->sun_path) - 1);
        return -1;
    }
    memcpy(sun->sun_path, path, strlen(path) + 1);
    return 0;
}

/* ------------------------------------------------------------ clients */

static void client_close(struct ctl_client *cl)
{
    fx_ctl *ctl = cl->ctl;
    char junk[512];

    if (cl->timer)
        fx_timer_cancel(ctl->loop, cl->timer);
    fx_loop_del_fd(ctl->loop, cl->fd);
    /* Unread input would turn the close into a reset, losing the answer. */
    while (recv(cl->fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
        ;
    shutdown(cl->fd, SHUT_WR);
    close(cl->fd);
    *cl->prev = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    ctl->nclients--;
    free(cl->req);
    free(cl->out);
    free(cl);
}

static void on_timeout(void *arg)
{
    struct ctl_client *cl = arg;
    cl->timer = NULL;
    client_close(cl);
}

static void client_write(struct ctl_client *cl)
{
    while (cl->outoff < cl->outlen) {
        ssize_t n = send(cl->fd, cl->out + cl->outoff, cl->outlen - cl->outoff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            fx_loop_mod_fd(cl->ctl->loop, cl->fd, FX_WRITE);
            return;
        }
        if (n <= 0)
            break;      /* the client went away */
        cl->outoff += (size_t)n;
    }
    client_close(cl);
}

/* Takes ownership of body (may be NULL: out of memory, dropped). */
static void client_answer(struct ctl_client *cl, const char *status, char *body)
{
    if (!body) {
        client_close(cl);
        return;
    }
    if (cl->http) {
        size_t blen = strlen(body);
        char head[256];
        int hlen = snprintf(head, sizeof(head),
                            "HTTP/1.0 %s\r\n"
                            "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                            "Content-Length: %zu\r\n"
                            "Connection: close\r\n\r\n", status, blen);
        cl->out = malloc((size_t)hlen + blen + 1);
        if (!cl->out) {
            free(body);
            client_close(cl);
            return;
        }
        memcpy(cl->out, head, (size_t)hlen);
        memcpy(cl->out + hlen, body, blen + 1);
        cl->outlen = (size_t)hlen + blen;
        free(body);
    } else {
        cl->out = body;
        cl->outlen = strlen(body);
    }
    client_write(cl);
}

static char *dup_text(const char *s)
{
    return strdup(s);
}

static void handle_line(struct ctl_client *cl, char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
        line[--n] = 0;
    while (*line == ' ' || *line == '\t')
        line++;
    if (!strcmp(line, "stats"))
        client_answer(cl, NULL, cl->ctl->render(FX_CTL_STATS, cl->ctl->arg));
    else if (!strcmp(line, "metrics"))
        client_answer(cl, NULL, cl->ctl->render(FX_CTL_METRICS, cl->ctl->arg));
    else {
        char msg[FX_CTL_MAX_LINE + 96];
        int printable = 1;
        for (const char *p = line; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                printable = 0;
        snprintf(msg, sizeof(msg), "error: unknown request '%s' (expected stats or metrics)\n",
                 printable ? line : "?");
        client_answer(cl, NULL, dup_text(msg));
    }
}

static void handle_http(struct ctl_client *cl)
{
    char *line = cl->req, *eol = strpbrk(line, "\r\n");
    char method[16], target[256], version[16], extra;

    if (eol)
        *eol = 0;
    if (sscanf(line, "%15s %255s %15s %c", method, target, version, &extra) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0 || target[0] != '/') {
        client_answer(cl, "400 Bad Request", dup_text("bad request\n"));
        return;
    }
    size_t plen = strcspn(target, "?");
    if (!strcmp(method, "GET") && plen == 8 && !strncmp(target, "/metrics", 8))
        client_answer(cl, "200 OK", cl->ctl->render(FX_CTL_METRICS, cl->ctl->arg));
    else
        client_answer(cl, "404 Not Found", dup_text("not found: only GET /metrics is served\n"));
}

static void on_client(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct ctl_client *cl = data;

    if (cl->out) {                  /* answering */
        if (events & (FX_WRITE | FX_HUP | FX_ERR))
            client_write(cl);
        return;
    }
    for (;;) {
        if (cl->reqlen >= cl->reqmax) {
            client_close(cl);       /* too long: garbage */
            return;
        }
        ssize_t n = recv(fd, cl->req + cl->reqlen, cl->reqmax - cl->reqlen, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            client_close(cl);       /* vanished before asking */
            return;
        }
        cl->reqlen += (size_t)n;
        cl->req[cl->reqlen] = 0;
        if (memchr(cl->req, 0, cl->reqlen)) {
            client_close(cl);       /* binary garbage */
            return;
        }
        if (!cl->http) {
            char *nl = strchr(cl->req, '\n');
            if (nl) {
                *nl = 0;
                fx_loop_mod_fd(loop, fd, 0);
                handle_line(cl, cl->req);
                return;
            }
        } else if (strstr(cl->req, "\r\n\r\n") || strstr(cl->req, "\n\n")) {
            fx_loop_mod_fd(loop, fd, 0);
            handle_http(cl);
            return;
        }
    }
}

static void on_listen(fx_loop *loop, int fd, unsigned events, void *data)
{
    fx_ctl *ctl = data;
    int http = fd == ctl->http_fd;

    for (int i = 0; i < 16; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
            return;
        struct ctl_client *cl = NULL;
        if (ctl->nclients >= FX_CTL_MAX_CLIENTS || !(cl = calloc(1, sizeof(*cl))) ||
            !(cl->req = malloc((http ? FX_CTL_MAX_HTTP : FX_CTL_MAX_LINE) + 1))) {
            if (cl)
                free(cl);
            close(cfd);
            continue;
        }
        cl->ctl = ctl;
        cl->fd = cfd;
        cl->http = http;
        cl->reqmax = http ? FX_CTL_MAX_HTTP : FX_CTL_MAX_LINE;
        if (fx_loop_add_fd(loop, cfd, FX_READ, on_client, cl) != 0) {
            free(cl->req);
            free(cl);
            close(cfd);
            continue;
        }
        cl->next = ctl->clients;
        cl->prev = &ctl->clients;
        if (ctl->clients)
            ctl->clients->prev = &cl->next;
        ctl->clients = cl;
        ctl->nclients++;
        cl->timer = fx_timer_start(loop, FX_CTL_TIMEOUT_MS, on_timeout, cl);
    }
}

/* ------------------------------------------------------------ server */

/* 1: a live server answers on path; 0: nobody (stale or no file). */
static int someone_listens(const struct sockaddr_un *sun)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int live;
    if (fd < 0)
        return 0;
    live = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
    close(fd);
    return live;
}

int fx_ctl_bind_unix(const char *path, int is_default, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    int fd;

    if (unix_addr(path, &sun, err, errlen) != 0)
        return -1;
    if (is_default && !strncmp(path, "/run/fwxshim/", 13))
        mkdir("/run/fwxshim", 0755);      /* EEXIST is fine; bind reports the rest */
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
        snprintf(err, errlen, "control socket: socket: %s", strerror(errno));
        return -1;
    }
    mode_t old = umask(0077);
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    if (rc != 0 && errno == EADDRINUSE) {
        if (someone_listens(&sun)) {
            umask(old);
            close(fd);
            snprintf(err, errlen, "control socket %s is in use by another fwxhost (set [host] "
                     "control to another path)", path);
            return -1;
        }
        unlink(path);                     /* stale: a host that died */
        rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    }
    umask(old);
    if (rc != 0 || listen(fd, 16) != 0) {
        snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    chmod(path, 0600);
    return fd;
}

void fx_ctl_file_note(const char *path, struct fx_ctl_file *f)
{
    struct stat st;
    f->dev = f->ino = 0;
    if (stat(path, &st) == 0) {
        f->dev = (unsigned long long)st.st_dev;
        f->ino = (unsigned long long)st.st_ino;
    }
}

void fx_ctl_file_unlink(const char *path, const struct fx_ctl_file *f)
{
    struct stat st;
    if (stat(path, &st) == 0 && (unsigned long long)st.st_dev == f->dev &&
        (unsigned long long)st.st_ino == f->ino)
        unlink(path);
}

static int open_unix(fx_ctl *ctl, const char *path, int is_default, char *err, size_t errlen)
{
    int fd = fx_ctl_bind_unix(path, is_default, err, errlen);

    if (fd < 0)
        return -1;
    fx_ctl_file_note(path, &ctl->file);
    ctl->unix_fd = fd;
    return 0;
}

fx_ctl *fx_ctl_new(const char *path, int is_default, const void *metrics_sa, int metrics_len,
                   fx_ctl_render_fn render, void *arg, char *err, size_t errlen)
{
    return fx_ctl_new_fds(path, is_default, -1, metrics_sa, metrics_len, -1, render, arg, err, errlen);
}

fx_ctl *fx_ctl_new_fds(const char *path, int is_default, int unix_fd, const void *metrics_sa,
                       int metrics_len, int http_fd, fx_ctl_render_fn render, void *arg,
                       char *err, size_t errlen)
{
    fx_ctl *ctl = calloc(1, sizeof(*ctl));
    if (!ctl || !(ctl->path = strdup(path)) || !(ctl->loop = fx_loop_new())) {
        snprintf(err, errlen, "out of memory");
        if (ctl)
            free(ctl->path);
        free(ctl);
        return NULL;
    }
    ctl->unix_fd = ctl->http_fd = -1;
    ctl->render = render;
    ctl->arg = arg;
    if (unix_fd >= 0)
        ctl->unix_fd = unix_fd;   /* adopted: the file is its owner's to remove */
    else if (open_unix(ctl, path, is_default, err, errlen) != 0)
        goto fail;
    if (http_fd >= 0) {
        fx_sockaddr bound;
        int blen = sizeof(bound);
        ctl->http_fd = http_fd;
        if (fx_getsockname(http_fd, &bound, &blen) == 0)
            fx_addr_format(&bound, blen, ctl->metrics_addr, sizeof(ctl->metrics_addr));
    } else if (metrics_sa) {
        char why[256];
        fx_sockaddr bound;
        int blen = sizeof(bound);
        int fd = fx_tcp_listen(metrics_sa, metrics_len, 16, 0, why, sizeof(why));
        if (fd < 0) {
            snprintf(err, errlen, "metrics: %s", why);
            goto fail;
        }
        ctl->http_fd = fd;
        if (fx_getsockname(fd, &bound, &blen) == 0)
            fx_addr_format(&bound, blen, ctl->metrics_addr, sizeof(ctl->metrics_addr));
    }
    fx_loop_add_fd(ctl->loop, ctl->unix_fd, FX_READ, on_listen, ctl);
    if (ctl->http_fd >= 0)
        fx_loop_add_fd(ctl->loop, ctl->http_fd, FX_READ, on_listen, ctl);
    return ctl;

fail:
    fx_ctl_free(ctl);
    return NULL;
}

const char *fx_ctl_metrics_addr(const fx_ctl *ctl)
{
    return ctl->metrics_addr;
}

int fx_ctl_run(fx_ctl *ctl)
{
    return fx_loop_run(ctl->loop);
}

void fx_ctl_stop(fx_ctl *ctl)
{
    fx_loop_stop(ctl->loop);
}

void fx_ctl_free(fx_ctl *ctl)
{
    if (!ctl)
        return;
    while (ctl->clients)
        client_close(ctl->clients);
    if (ctl->unix_fd >= 0) {
        fx_loop_del_fd(ctl->loop, ctl->unix_fd);
        close(ctl->unix_fd);
        fx_ctl_file_unlink(ctl->path, &ctl->file);
    }
    if (ctl->http_fd >= 0) {
        fx_loop_del_fd(ctl->loop, ctl->http_fd);
        close(ctl->http_fd);
    }
    if (ctl->loop)
        fx_loop_free(ctl->loop);
    free(ctl->path);
    free(ctl);
}

/* ------------------------------------------------------------ client */

int fx_ctl_query(const char *path, const char *request, int out_fd, unsigned timeout_ms,
                 char *err, size_t errlen)
{
    struct sockaddr_un sun;
    char buf[8192];
    int fd;

    if (unix_addr(path, &sun, err, errlen) != 0)
        return -1;
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        snprintf(err, errlen, "no fwxhost is listening on %s (%s)", path, strerror(errno));
        close(fd);
        return -1;
    }
    size_t len = strlen(request), off = 0;
    while (off < len) {
        ssize_t n = send(fd, request + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "%s: send: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    uint64_t deadline = fx_now_ms() + timeout_ms;
    for (;;) {
        uint64_t now = fx_now_ms();
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (now >= deadline || poll(&p, 1, (int)(deadline - now)) == 0) {
            snprintf(err, errlen, "%s: no answer within %u ms", path, timeout_ms);
            close(fd);
            return -1;
        }
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        for (ssize_t w = 0; w < n;) {
            ssize_t k = write(out_fd, buf + w, (size_t)(n - w));
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                snprintf(err, errlen, "write: %s", strerror(errno));
                close(fd);
                return -1;
            }
            w += k;
        }
    }
    close(fd);
    return 0;
}
