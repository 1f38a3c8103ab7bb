/*
 * fxconf.h - the configuration model: [host], [filter NAME], [rule NAME].
 *
 * Owns parsing (INI through libinih) and validation of every value, so the
 * rest of the host only ever sees checked, typed data.  The command line of
 * fwxhost builds the same model through fx_config_set, so both paths share
 * one set of checks and one set of messages.
 *
 * Errors are one line: "FILE:LINE: what is wrong" from fx_config_load, the
 * same text without "FILE:LINE: " from the programmatic functions.
 */
#ifndef FX_CONF_H
#define FX_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "fxnet.h"

/* Same layout as the Win32 GUID, so the COM layer can memcpy it. */
typedef struct fx_guid {
    uint32_t data1;
    uint16_t data2;
    uint16_t data3;
    uint8_t  data4[8];
} fx_guid;

enum fx_profile {
    FX_PROFILE_AUTO = 0,      /* by PE type: PE32 -> isa2000, PE32+ -> tmg */
    FX_PROFILE_ISA2000,
    FX_PROFILE_TMG
};

enum fx_rule_type { FX_RULE_PUBLISH = 0, FX_RULE_OUTBOUND };
/* [host] on-disabled-filter: new connections a disabled filter would have
 * seen are refused, or go on without it. */
enum fx_on_disabled { FX_DISABLED_REFUSE = 0, FX_DISABLED_BYPASS };
enum fx_proto { FX_PROTO_TCP = 0, FX_PROTO_UDP };

typedef struct fx_setting {
    char *name;               /* without the "setting." prefix */
    char *value;
} fx_setting;

typedef struct fx_filter_conf {
    char *name;
    int line;                 /* of the section header; 0 if built in code */
    char *path;               /* as written */
    int has_clsid;
    fx_guid clsid;
    int enabled;
    enum fx_profile profile;
    fx_setting *settings;     /* in file order */
    size_t nsettings;
} fx_filter_conf;

typedef struct fx_rule_conf {
    char *name;
    int line;
    enum fx_rule_type type;
    enum fx_proto protocol;
    int has_listen;
    fx_sockaddr listen;
    int listen_len;
    int has_target;
    fx_sockaddr target;
    int target_len;
    int type_line, listen_line, target_line;   /* 0 = not set from a file */
    int secondary_only;       /* outbound: only connections a filter anticipated pass */
    int secondary_only_line;
    unsigned udp_timeout;     /* UDP: seconds a silent client address keeps its connection */
} fx_rule_conf;

#define FX_UDP_TIMEOUT_DEFAULT 60
#define FX_POLL_SPIN_DEFAULT   50   /* docs/BENCHMARKS.md, finding 23 */

typedef struct fx_host_conf {
    int workers;              /* 0 = one per CPU core */
    unsigned poll_spin;       /* microseconds a worker polls before sleeping (fxloop.h) */
    int log_level;            /* enum fx_log_level */
    unsigned max_sessions;
    unsigned connect_timeout; /* seconds */
    unsigned idle_timeout;    /* seconds; 0 = never */
    unsigned session_timeout; /* seconds a client session lives without a connection; 0 = never */
    size_t max_buffer;        /* bytes per connection direction */
    char *trace;              /* NULL = no trace */
    unsigned max_faults;      /* faults before a filter is disabled; 0 = never */
    enum fx_on_disabled on_disabled;   /* what a disabled filter's connections get */
    unsigned hang_timeout;    /* seconds before the watchdog reports a filter call; 0 = off */
    int reclaim_leaks;        /* take back buffers filters hold when their connection ends (default 1) */
    unsigned secondary_timeout; /* seconds an anticipated action with FWX_FLAG_TIMEOUT waits */
    char *control;            /* the control socket (fxctl.h); NULL = the default path */
    char *record;             /* fwxhost --record: directory for session scripts; NULL = off */
    size_t record_max;        /* bytes per recorded script (fxrecord.h) */
    char *user;               /* run as this user once listening (fxsec.h); NULL = stay */
    int has_metrics;          /* Prometheus HTTP on a loopback address */
    fx_sockaddr metrics;
    int metrics_len;
    /* The supervisor (fwxhost(8)): */
    unsigned restart_limit;   /* worker restarts per minute before giving up; 0 = none */
    unsigned restart_delay;   /* seconds before the first restart, doubled per recent one */
    unsigned reload_drain;    /* seconds an old worker may drain after a reload */
} fx_host_conf;

/* One [abi] override (docs ABI-301): a name from fxabi_names.h and its value. */
typedef struct fx_abi_value {
    char *name;               /* as in fxabi_names.h, e.g. "IID_IFWXFilter" */
    int is_guid;              /* IID_* / CLSID_*: guid; otherwise value */
    fx_guid guid;
    uint32_t value;
    char *file;               /* where it was set (NULL: programmatic) */
    int line;
} fx_abi_value;

typedef struct fx_config {
    char *path;               /* the file, or NULL */
    fx_host_conf host;
    fx_filter_conf *filters;  /* chain order = file order */
    size_t nfilters;
    fx_rule_conf *rules;
    size_t nrules;
    fx_abi_value *abi;        /* [abi] overrides, in the order read */
    size_t nabi;
} fx_config;

/* Parse and validate.  NULL with one message in err on any problem. */
fx_config *fx_config_load(const char *path, char *err, size_t errlen);
/* The same from memory (len bytes, need not be NUL-terminated); name is
 * used in messages in place of the file name. */
fx_config *fx_config_parse(const char *name, const char *text, size_t len, char *err,
                           size_t errlen);

/* As fx_config_load, from an open file (read from its start; fd stays
 * open) that holds the text of path: messages name path.  The supervisor
 * hands its worker the exact text it validated this way ("@config", fxinherit.h). */
fx_config *fx_config_load_fd(int fd, const char *path, char *err, size_t errlen);

/* Host defaults, no filters, no rules.  NULL on out of memory. */
fx_config *fx_config_new_empty(void);

void fx_config_free(fx_config *cfg);

/* Set one key as if read from the file: section is "host", "filter NAME"
 * or "rule NAME" (created on first use, and kept even if the value is
 * then refused: callers treat any error as fatal).  Setting a key twice
 * keeps the last value, as on a command line; only fx_config_load
 * refuses duplicates.  Returns 0, or -1 with a message.  Pointers into
 * cfg->filters / cfg->rules may move on each call. */
int fx_config_set(fx_config *cfg, const char *section, const char *key,
                  const char *value, char *err, size_t errlen);

/* Shorthands for the command line, built on fx_config_set.  clsid, type,
 * target and protocol may be NULL (type NULL = publish, protocol NULL =
 * tcp).  Return 0 or -1 with a message. */
int fx_config_add_filter(fx_config *cfg, const char *name, const char *path,
                         const char *clsid, char *err, size_t errlen);
int fx_config_add_rule(fx_config *cfg, const char *name, const char *type,
                       const char *listen, const char *target,
                       const char *protocol, char *err, size_t errlen);

/* Reads path into cfg as if its text stood in a config file: every section is
 * allowed, [abi] 'include = FILE' nests (relative to the including file).  For
 * override files (fwxhost --abi, fwxinfo --discover output).  No whole-config
 * check.  0, or -1 with "FILE:LINE: message". */
int fx_config_include(fx_config *cfg, const char *path, char *err, size_t errlen);

/* Checks what only the whole config can tell: required keys, target vs
 * type, at least one rule.  fx_config_load runs it; code that builds a
 * config must call it before use.  0, or -1 with a message. */
int fx_config_check(const fx_config *cfg, char *err, size_t errlen);

/* "{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}" or without braces, any case.
 * 0 or -1. */
int fx_guid_parse(const char *text, fx_guid *out);
/* Upper case, with braces; buf needs 39 bytes. */
void fx_guid_format(const fx_guid *g, char *buf, size_t len);

const char *fx_profile_name(enum fx_profile p);   /* "auto", "isa2000", "tmg" */

#endif /* FX_CONF_H */
