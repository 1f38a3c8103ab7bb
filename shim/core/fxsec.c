/*
 * fxsec.c - refusing world-replaceable files, and dropping root
 * (see fxsec.h; the policy is in docs/security.md).
 */
#define _GNU_SOURCE
#include "fxsec.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Checks path itself (file) and each directory above it. */
static int check_chain(const char *abs, const char *what, const char *shown, char *err,
                       size_t errlen)
{
    char dir[PATH_MAX];
    struct stat st;

    if (stat(abs, &st) != 0) {
        snprintf(err, errlen, "cannot check %s %s: %s", what, shown, strerror(errno));
        return -1;
    }
    if (st.st_mode & S_IWOTH) {
        snprintf(err, errlen, "refusing %s %s: it is writable by every user (mode %04o); "
                 "fix with: chmod o-w %s", what, shown, (unsigned)(st.st_mode & 07777), abs);
        return -1;
    }
    if (strlen(abs) >= sizeof(dir)) {
        snprintf(err, errlen, "cannot check %s %s: path too long", what, shown);
        return -1;
    }
    strcpy(dir, abs);
    for (;;) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL)
            break;
        if (slash == dir)
            slash[1] = '\0';          /* "/" */
        else
            *slash = '\0';
        if (lstat(dir, &st) != 0) {
            snprintf(err, errlen, "cannot check %s %s: %s: %s", what, shown, dir, strerror(errno));
            return -1;
        }
        if (!S_ISLNK(st.st_mode) && (st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
            snprintf(err, errlen, "refusing %s %s: directory %s is writable by every user "
                     "without the sticky bit, so anyone could replace it; fix with: "
                     "chmod o-w %s (or chmod +t)", what, shown, dir, dir);
            return -1;
        }
        if (!strcmp(dir, "/"))
            break;
    }
    return 0;
}

int fx_path_check_safe(const char *path, const char *what, char *err, size_t errlen)
{
    char abs[PATH_MAX], resolved[PATH_MAX];

    if (path == NULL || *path == '\0') {
        snprintf(err, errlen, "cannot check %s: empty path", what);
        return -1;
    }
    /* As given (the names a replacement would use)... */
    if (path[0] == '/') {
        if (strlen(path) >= sizeof(abs)) {
            snprintf(err, errlen, "cannot check %s %s: path too long", what, path);
            return -1;
        }
        strcpy(abs, path);
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL ||
            snprintf(abs, sizeof(abs), "%s/%s", strcmp(cwd, "/") ? cwd : "", path) >= (int)sizeof(abs)) {
            snprintf(err, errlen, "cannot check %s %s: path too long", what, path);
            return -1;
        }
    }
    if (check_chain(abs, what, path, err, errlen) != 0)
        return -1;
    /* ...and after symbolic links (the file actually read). */
    if (realpath(path, resolved) == NULL) {
        snprintf(err, errlen, "cannot check %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    return strcmp(resolved, abs) ? check_chain(resolved, what, path, err, errlen) : 0;
}

int fx_check_ids(unsigned uid, unsigned gid, char *err, size_t errlen)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    int rc = 0, nthreads = 0;

    if (d == NULL) {
        snprintf(err, errlen, "cannot list the threads (/proc/self/task): %s", strerror(errno));
        return -1;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char path[64], line[256];
        unsigned ids[2][4];
        int got = 0;
        FILE *f;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%.20s/status", de->d_name);
        if ((f = fopen(path, "r")) == NULL)
            continue;   /* the thread ended meanwhile */
        while (fgets(line, sizeof(line), f)) {
            if (sscanf(line, "Uid: %u %u %u %u", &ids[0][0], &ids[0][1], &ids[0][2], &ids[0][3]) == 4)
                got |= 1;
            else if (sscanf(line, "Gid: %u %u %u %u", &ids[1][0], &ids[1][1], &ids[1][2], &ids[1][3]) == 4)
                got |= 2;
        }
        fclose(f);
        if (got != 3) {
            snprintf(err, errlen, "thread %s: no Uid/Gid lines in %s", de->d_name, path);
            rc = -1;
            break;
        }
        nthreads++;
        for (int k = 0; k < 4; k++) {
            if (ids[0][k] != uid || ids[1][k] != gid) {
                snprintf(err, errlen, "thread %s still runs as uid %u/%u/%u gid %u/%u/%u "
                         "(wanted %u:%u)", de->d_name, ids[0][0], ids[0][1], ids[0][2],
                         ids[1][0], ids[1][1], ids[1][2], uid, gid);
                rc = -1;
                break;
            }
        }
    }
    closedir(d);
    if (rc == 0 && nthreads == 0) {
        snprintf(err, errlen, "no thread found in /proc/self/task");
        rc = -1;
    }
    return rc;
}

int fx_drop_privileges(const char *user, char *err, size_t errlen)
{
    struct passwd pw, *res = NULL;
    char buf[4096];
    int e;

    e = getpwnam_r(user, &pw, buf, sizeof(buf), &res);
    if (res == NULL) {
        snprintf(err, errlen, "user '%s': %s", user, e ? strerror(e) : "no such user");
        return -1;
    }
    if (pw.pw_uid == 0) {
        snprintf(err, errlen, "user '%s' is root (uid 0): name an unprivileged user", user);
        return -1;
    }
    if (geteuid() != 0) {
        if (geteuid() == pw.pw_uid && getuid() == pw.pw_uid)
            return fx_check_ids(pw.pw_uid, getgid(), err, errlen);   /* already that user */
        snprintf(err, errlen, "cannot become user '%s': not started as root (uid %u)",
                 user, (unsigned)geteuid());
        return -1;
    }
    /* Order matters: groups and gid while still root, uid last. */
    if (initgroups(user, pw.pw_gid) != 0) {
        snprintf(err, errlen, "initgroups(%s): %s", user, strerror(errno));
        return -1;
    }
    if (setgid(pw.pw_gid) != 0) {
        snprintf(err, errlen, "setgid(%u): %s", (unsigned)pw.pw_gid, strerror(errno));
        return -1;
    }
    if (setuid(pw.pw_uid) != 0) {
        snprintf(err, errlen, "setuid(%u): %s", (unsigned)pw.pw_uid, strerror(errno));
        return -1;
    }
    /* It must stick: no way back to root, in any thread. */
    if (setuid(0) == 0 || seteuid(0) == 0) {
        snprintf(err, errlen, "privileges did not drop: setuid(0) still succeeds after "
                 "becoming '%s'", user);
        return -1;
    }
    if (fx_check_ids(pw.pw_uid, pw.pw_gid, err, errlen) != 0)
        return -1;
    {
        gid_t groups[256];
        int n = getgroups(256, groups);
        for (int i = 0; i < n; i++) {
            if (groups[i] == 0 && pw.pw_gid != 0) {
                struct group gr, *gres = NULL;
                char gbuf[4096];
                /* Only if the user database really lists the user in group 0. */
                if (getgrgid_r(0, &gr, gbuf, sizeof(gbuf), &gres) == 0 && gres) {
                    int member = 0;
                    for (char **m = gr.gr_mem; m && *m; m++)
                        member |= !strcmp(*m, user);
                    if (!member) {
                        snprintf(err, errlen, "supplementary group 0 (root) kept after "
                                 "becoming '%s'", user);
                        return -1;
                    }
                }
            }
        }
    }
    setenv("USER", user, 1);
    setenv("LOGNAME", user, 1);
    return 0;
}
