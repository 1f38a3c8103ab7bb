/*
 * fxlog.h - process-wide logging to stderr.
 *
 * Owns: the log level, the program name and the syslog-prefix switch (the
 * only global mutable state in shim/core, by design: a process has one
 * stderr).  Each message becomes exactly one write(2) of one line, so lines
 * from concurrent threads never interleave and journald can read the
 * "<N>" priority prefix.
 */
#ifndef FX_LOG_H
#define FX_LOG_H

/* Values are the syslog priorities, so the "<N>" prefix is just the level. */
enum fx_log_level {
    FX_LOG_ERROR  = 3,
    FX_LOG_WARN   = 4,
    FX_LOG_NOTICE = 5,
    FX_LOG_INFO   = 6,
    FX_LOG_DEBUG  = 7
};

/* Call once, before other threads log.  progname is copied (up to 63 bytes).
 * Also decides the syslog prefix: on unless stderr is a terminal. */
void fx_log_init(const char *progname, int level);

/* Thread-safe; takes effect for the next message. */
void fx_log_set_level(int level);
int  fx_log_get_level(void);

/* on != 0: every line starts with "<N>".  Overrides fx_log_init's choice. */
void fx_log_set_syslog_prefix(int on);

/* "error", "warn"/"warning", "notice", "info", "debug" (any case) -> level;
 * -1 for anything else. */
int fx_log_level_parse(const char *text);

/* "ERROR", "WARN", ...; "?" for a value that is not a level. */
const char *fx_log_level_name(int level);

/* Nonzero when a message at this level would be written; lets callers skip
 * building expensive arguments. */
int fx_log_enabled(int level);

/* Writes "<N>prog[pid]: LEVEL: message\n".  A trailing newline in fmt is
 * dropped.  Messages up to 4 KiB are written whole from a stack buffer;
 * longer ones are heap-allocated and only cut (with a visible marker) if
 * that allocation fails.  errno is preserved. */
void fx_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* FX_LOG_H */
