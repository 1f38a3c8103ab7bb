/*
 * replay_main.c - a main() for the fuzz harnesses when libFuzzer is not
 * linked: feeds every file named on the command line (directories: every
 * regular file in them) to LLVMFuzzerTestOneInput once.  "make check"
 * builds each harness with it and replays tests/fuzz/TARGET/, so the
 * seeds and every input that once crashed stay regression tests.
 * Prints "ok N path" per input; a crash fails the test run.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long len;
    int rc = -1;

    if (f == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto out;
    /* malloc of exactly len bytes, so ASan sees reads past the input. */
    if ((buf = malloc(len ? (size_t)len : 1)) == NULL)
        goto out;
    if (len && fread(buf, 1, (size_t)len, f) != (size_t)len)
        goto out;
    LLVMFuzzerTestOneInput(buf, (size_t)len);
    printf("ok %d %s (%ld bytes)\n", ++count, path, len);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "%s: cannot read\n", path);
    free(buf);
    fclose(f);
    return rc;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0;
    int rc = 0;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return run_file(path);
    if ((d = opendir(path)) == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        char **nn;
        if (de->d_name[0] == '.')
            continue;
        if ((nn = realloc(names, (n + 1) * sizeof(*names))) == NULL)
            break;
        names = nn;
        if ((names[n] = malloc(strlen(path) + strlen(de->d_name) + 2)) == NULL)
            break;
        sprintf(names[n++], "%s/%s", path, de->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), cmp);
    for (size_t i = 0; i < n; i++) {
        if (run_file(names[i]) != 0)
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 0;

    for (int i = 1; i < argc; i++)
        if (run_path(argv[i]) != 0)
            rc = 1;
    if (count == 0) {
        fprintf(stderr, "%s: no inputs\n", argv[0]);
        return 1;
    }
    printf("# %d inputs replayed\n", count);
    return rc;
}
