/*
 * fwxinfo.c — tells a user what an old filter DLL is: its PE machine and
 * exports, the COM class DllGetClassObject serves, and what its FilterInit
 * registers (hook events, port ranges) when handed a real host
 * IFWXFirewall. Then FilterShutdown and unload.
 *
 * Runs as the winelib flavour matching the DLL (the launcher picks it).
 * Exit status: 0 all DLLs described, 2 a DLL could not be loaded (one line
 * naming the file and the reason).
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fxconf.h"
#include "fxpe.h"
#include "loader.h"
#include "discover.h"


#define MAX_CLASSES 16

static void usage(FILE *to)
{
    fprintf(to,
            "usage: fwxinfo [options] DLL[=CLSID] ...\n"
            "       fwxinfo --discover DLL\n"
            "\n"
            "Describes ISA Server 2000 application-filter DLLs: PE machine, exports,\n"
            "the COM class DllGetClassObject serves, and the hook events and port\n"
            "ranges its FilterInit registers with the host.\n"
            "\n"
            "  DLL=CLSID        use this class instead of probing the DLL for one\n"
            "  --discover DLL   find the CLSIDs and IIDs the DLL was built with (type\n"
            "                   library, REGISTRY resources, probing, a dry run) and print\n"
            "                   them as an [abi] override file (fwxhost --abi FILE)\n"
            "  --log-level L    error, warn, notice, info, debug (default warn)\n"
            "  -h, --help       this text\n"
            "\n"
            "Exit status: 0 described, 2 a DLL could not be loaded.\n");
}

static int describe_pe(const char *path)
{
    fx_pe_info pe;
    char err[256];

    if (fx_pe_read_file(path, &pe, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxinfo: %s\n", err);
        return -1;
    }
    printf("file:        %s\n", path);
    printf("machine:     %s (%s%s)\n", fx_pe_machine_name(pe.machine),
           pe.is_pe32plus ? "PE32+" : "PE32", pe.is_dll ? " DLL" : ", not a DLL");
    printf("exports:    ");
    for (size_t i = 0; i < pe.nexports; i++) {
        if (pe.exports[i].name)
            printf(" %s", pe.exports[i].name);
        else
            printf(" #%u", pe.exports[i].ordinal);
    }
    printf("%s\n", pe.nexports ? "" : " none");
    printf("imports:    ");
    for (size_t i = 0; i < pe.nimports; i++)
        printf(" %s", pe.imports[i]);
    printf("%s\n", pe.nimports ? "" : " none");
    fx_pe_info_free(&pe);
    return 0;
}

static int describe(const char *arg, IFWXFirewall *firewall)
{
    struct fx_filter f;
    GUID classes[MAX_CLASSES];
    char err[1024], mask[256], text[39];
    int n_classes = 0, rc = -1;
    HRESULT init_hr;
    const char *eq = strchr(arg, '=');

    memset(&f, 0, sizeof(f));
    f.path = eq ? strndup(arg, eq - arg) : strdup(arg);
    f.name = f.path;
    if (eq) {
        fx_guid g;
        if (fx_guid_parse(eq + 1, &g) != 0) {
            fprintf(stderr, "fwxinfo: %s: '%s' is not a CLSID ({XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX})\n",
                    f.path, eq + 1);
            goto out;
        }
        memcpy(&f.clsid, &g, sizeof(g));
        f.has_clsid = TRUE;
    }
    if (describe_pe(f.path) != 0)
        goto out;
    if (fx_filter_load(&f, classes, MAX_CLASSES, &n_classes, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxinfo: %s\n", err);
        goto out;
    }
    printf("classes:    ");
    for (int i = 0; i < n_classes && i < MAX_CLASSES; i++)
        printf(" %s", fx_guid_str(&classes[i], text));
    printf("%s\n", n_classes ? " (found by probing DllGetClassObject)" : " none found by probing");
    printf("class:       %s (IFWXFilter obtained)\n", fx_guid_str(&f.clsid, text));
    if (fx_filter_init(&f, firewall, &init_hr, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxinfo: %s\n", err);
        goto out;
    }
    printf("FilterInit:  0x%08lx%s\n", (unsigned long)init_hr, init_hr == S_OK ? " (S_OK)" : "");
    printf("hook events: 0x%08lx %s\n", (unsigned long)f.hooks.dwGlobalEvents,
           fx_event_mask_str(f.hooks.dwGlobalEvents, mask, sizeof(mask)));
    printf("port ranges: %lu\n", (unsigned long)f.hooks.dwNumPortRanges);
    for (DWORD i = 0; i < f.hooks.dwNumPortRanges; i++)
        printf("  ports %lu-%lu: 0x%08lx %s\n", (unsigned long)f.ranges[i].dwLowPort,
               (unsigned long)f.ranges[i].dwHighPort, (unsigned long)f.ranges[i].dwEvents,
               fx_event_mask_str(f.ranges[i].dwEvents, mask, sizeof(mask)));
    rc = 0;
out:
    if (f.filter || f.module) {
        fx_filter_unload(&f);
        if (rc == 0)
            printf("FilterShutdown: done; DLL unloaded\n");
    }
    free(f.path);
    return rc;
}

int main(int argc, char **argv)
{
    int level = FX_LOG_WARN, ndlls = 0, failed = 0;

    if (argc >= 3 && !strcmp(argv[1], "--discover")) {
        char err[1024];
        int rc;
        if (argc != 3) {
            fprintf(stderr, "fwxinfo: --discover takes one DLL\n");
            return 2;
        }
        fx_log_init("fwxinfo", FX_LOG_ERROR);
        CoInitializeEx(NULL, COINIT_MULTITHREADED);
        rc = discover_dll(argv[2], err, sizeof(err));
        CoUninitialize();
        fflush(stdout);
        if (rc != 0) {
            fprintf(stderr, "fwxinfo: %s\n", err);
            return 2;
        }
        return 0;
    }

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--log-level") && i + 1 < argc) {
            if ((level = fx_log_level_parse(argv[++i])) < 0) {
                fprintf(stderr, "fwxinfo: --log-level: unknown level '%s'\n", argv[i]);
                return 2;
            }
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "fwxinfo: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        } else {
            ndlls++;
        }
    }
    if (!ndlls) {
        usage(stderr);
        return 2;
    }
    fx_log_init("fwxinfo", level);
    CoInitializeEx(NULL, COINIT_MULTITHREADED);
    IFWXFirewall *firewall = firewall_get();
    int first = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--log-level")) {
            i++;
            continue;
        }
        if (!first)
            printf("\n");
        first = 0;
        if (describe(argv[i], firewall) != 0)
            failed = 1;
    }
    IFWXFirewall_Release(firewall);
    CoUninitialize();
    fflush(stdout);
    return failed ? 2 : 0;
}
