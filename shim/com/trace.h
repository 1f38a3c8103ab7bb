/*
 * trace.h — the call trace (`fwxhost --trace FILE`, `[host] trace`, docs HOST-300):
 * one line per call across the filter boundary, in both directions, with interface,
 * method, slot, decoded arguments, result and thread.
 *
 *   host->filter  every COBJMACROS call the host makes on an interface filters
 *                 implement (IFWXFilter_FilterInit, IFWXDataFilter_SetSockets, ...) goes
 *                 through a generated inline wrapper (gen/fxtrace.h, included by
 *                 fwxhost.h), so the call is traced where it is made, inside its
 *                 GUARDED_CALL;
 *   filter->host  trace_open puts generated wrappers (gen/fxtrace.c) into every host
 *                 vtable registered by FX_HOST_VTBL (trap.h); they trace a call made
 *                 from filter code (inside a guarded call, not from host code) and
 *                 forward to the saved entry.
 *
 * Line format (one "call" line, then one "ret" line with the result and out values):
 *   SECONDS.MICROS tid TID call DIR IFACE::METHOD slot N this=P name=value ...
 *   SECONDS.MICROS tid TID ret  DIR IFACE::METHOD slot N = RESULT [name=*value ...]
 * DIR is host->filter or filter->host; a fault in filter code adds a "fault" line.
 * Tracing off costs one load and a branch per call.
 */
#ifndef FWX_TRACE_H
#define FWX_TRACE_H

enum fxt_dir { FXT_INTO_FILTER, FXT_INTO_HOST };

struct fxt_call {
    enum fxt_dir dir;
    const char *iface, *method;
    int slot;
    void *saved_host;        /* FXT_INTO_HOST: the previous marker, restored by fxt_end */
    size_t len;
    char line[1024];
};

extern volatile int fxt_on;

/* Opens (truncates) path and turns tracing on; 0, or -1 with a message in err. */
int trace_open(const char *path, char *err, size_t errlen);
void trace_close(void);

/* FALSE: do not trace this call (the caller just makes it). */
BOOL fxt_begin(struct fxt_call *c, enum fxt_dir dir, const char *iface, const char *method,
               int slot, const void *This);
void fxt_arg_guid(struct fxt_call *c, const char *name, const void *guid);
void fxt_arg_sockaddr(struct fxt_call *c, const char *name, const void *sa);
void fxt_arg_ulong(struct fxt_call *c, const char *name, unsigned long v);
void fxt_arg_long(struct fxt_call *c, const char *name, long v);
void fxt_arg_evtype(struct fxt_call *c, const char *name, long v);
void fxt_arg_uptr(struct fxt_call *c, const char *name, ULONG_PTR v);
void fxt_arg_iobuffer(struct fxt_call *c, const char *name, const void *buf);
void fxt_arg_event(struct fxt_call *c, const char *name, const void *ev);
void fxt_arg_str(struct fxt_call *c, const char *name, const void *s);
void fxt_arg_inaddr(struct fxt_call *c, const char *name, const void *a);
void fxt_arg_ptr(struct fxt_call *c, const char *name, const void *p);
void fxt_arg_inoutint(struct fxt_call *c, const char *name, const void *p);
void fxt_emit_call(struct fxt_call *c);
void fxt_ret_hr(struct fxt_call *c, HRESULT hr);
void fxt_ret_ulong(struct fxt_call *c, ULONG v);
void fxt_out_ptr(struct fxt_call *c, const char *name, void *const *p);
void fxt_out_int(struct fxt_call *c, const char *name, const void *p);
void fxt_end(struct fxt_call *c);
/* guard.c: a fault caught in filter code. */
void fxt_fault(const char *iface, const char *method, DWORD code, void *address);

/* FXT_INTO_HOST wrappers: the saved vtable entry of This's class. */
void *fxt_original(const void *This, int slot);

/* gen/fxtrace.c */
struct fxt_wrappers {
    const char *iface;
    void *const *slots;
    unsigned n;
};
extern const struct fxt_wrappers fxt_host_wrappers[];

#endif /* FWX_TRACE_H */
