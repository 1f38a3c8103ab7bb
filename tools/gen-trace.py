#!/usr/bin/env python3
"""gen-trace.py - generates the call trace's typed wrappers (shim/com/trace.h) from the
widl header (gen/wspfwext.h), so that every FWX method is traced with decoded arguments
without a hand-written wrapper per method.

  gen-trace.py WSPFWEXT_H OUT_H OUT_C OUT_GUIDS

OUT_H (included by fwxhost.h after wspfwext.h): for each interface filters implement,
a static inline wrapper per method, and the COBJMACROS name (IFWXDataFilter_SetSockets,
...) redefined to it: every host->filter call is traced where the host makes it.
OUT_C: for each interface the host implements, a wrapper per method with the method's
exact prototype (STDMETHODCALLTYPE), and a table of them; trace.c puts them into the
host's vtables when tracing is on (filter->host calls) and they forward to the saved
original entries.
OUT_GUIDS: every FWX IID and CLSID_FWXFilterAdmin as a writable variable (the host links
it instead of widl's wspfwext_i.c), so that [abi] overrides (shim/com/abi.c) change the
values the host answers and asks for.
"""
import re
import sys

HOST_IFACES = ["IFWXFirewall", "IFWXSession", "IFWXConnection", "IFWXSocket",
               "IFWXNetworkSocket", "IFWXIOBuffer", "IFWXFirewallAction", "IFWXUdpDestination"]
FILTER_IFACES = ["IFWXFilter", "IFWXSessionFilter", "IFWXDataFilter", "IFWXIOCompletion",
                 "IFWXAcceptCompletion", "IFWXExternalIOCompletion", "IFWXImpersonator"]


def parse(text):
    """{iface: [(ret, name, [(type, pname), ...]), ...]} in slot order."""
    out = {}
    for m in re.finditer(r"typedef struct (\w+)Vtbl \{(.*?)\} \1Vtbl;", text, re.S):
        iface, body = m.group(1), m.group(2)
        methods = []
        for mm in re.finditer(r"(\w+) \(STDMETHODCALLTYPE \*(\w+)\)\((.*?)\);", body, re.S):
            params = []
            for p in mm.group(3).split(","):
                p = " ".join(p.split())
                pm = re.match(r"(.*?)\s*(\w+)$", p)
                ptype, pname = pm.group(1).strip(), pm.group(2)
                params.append((ptype, pname))
            methods.append((mm.group(1), mm.group(2), params))
        out[iface] = methods
    return out


def kind(ptype):
    t = ptype.replace(" *", "*").replace("* ", "*")
    if t in ("REFIID", "REFGUID", "REFCLSID"):
        return "guid"
    if t in ("LPSOCKADDR", "SOCKADDR*"):
        return "sockaddr"
    if t in ("DWORD", "ULONG", "UINT"):
        return "ulong"
    if t in ("INT", "int", "LONG", "BOOL", "FwxScope", "FwxDataFilterPriorityClass",
             "DataFilterPriorityClass"):
        return "long"
    if t in ("BOOLEAN", "USHORT"):
        return "ulong"
    if t in ("ProxyEventType", "FwxFirewallEventType"):
        return "evtype"
    if t == "UserContextType":
        return "uptr"
    if t == "IFWXIOBuffer*":
        return "iobuffer"
    if t == "const FirewallEvent*":
        return "event"
    if t in ("LPCSTR", "const char*"):
        return "str"
    if t == "IN_ADDR":
        return "inaddr"
    if t in ("DWORD*", "LPDWORD", "ULONG*", "int*", "LPINT", "INT*"):
        return "inoutint"
    if t == "LPSOCKADDR*":
        return "ptr"            # an array of addresses, in
    if t.endswith("**") or t in ("LPSTR*", "PFwxFilterHookEvents*", "LPOVERLAPPED*"):
        return "outptr"
    return "ptr"


def arg_lines(params, indent):
    lines = []
    for ptype, pname in params[1:]:
        k = kind(ptype)
        if k == "inaddr":
            lines.append('%sfxt_arg_inaddr(&tc_, "%s", &%s);' % (indent, pname, pname))
        elif k in ("ulong",):
            lines.append('%sfxt_arg_ulong(&tc_, "%s", (unsigned long)%s);' % (indent, pname, pname))
        elif k in ("long", "evtype"):
            lines.append('%sfxt_arg_%s(&tc_, "%s", (long)%s);' % (indent, k, pname, pname))
        elif k == "uptr":
            lines.append('%sfxt_arg_uptr(&tc_, "%s", (ULONG_PTR)%s);' % (indent, pname, pname))
        elif k == "outptr":
            lines.append('%sfxt_arg_ptr(&tc_, "%s", (const void *)%s);' % (indent, pname, pname))
        else:
            lines.append('%sfxt_arg_%s(&tc_, "%s", (const void *)%s);' % (indent, k, pname, pname))
    return lines


def out_lines(params, indent):
    lines = []
    for ptype, pname in params[1:]:
        k = kind(ptype)
        if k == "outptr":
            lines.append('%sfxt_out_ptr(&tc_, "%s", (void *const *)%s);' % (indent, pname, pname))
        elif k == "inoutint":
            lines.append('%sfxt_out_int(&tc_, "%s", (const void *)%s);' % (indent, pname, pname))
    return lines


def wrapper(iface, slot, ret, name, params, direction, call, static_kw):
    decl = ", ".join("%s %s" % (t, n) for t, n in params)
    args = ", ".join(n for _, n in params)
    ptypes = ", ".join(t for t, _ in params)
    fn = "fxt%s_%s_%s" % ("c" if direction == "FXT_INTO_FILTER" else "w", iface, name)
    res = "hr" if ret == "HRESULT" else "ulong"
    body = []
    body.append("%s %s %s%s(%s)" % (static_kw, ret,
                                      "STDMETHODCALLTYPE " if direction == "FXT_INTO_HOST" else "",
                                      fn, decl))
    body.append("{")
    body.append("    struct fxt_call tc_;")
    body.append("    %s r_;" % ret)
    if direction == "FXT_INTO_HOST":
        body.append("    %s (STDMETHODCALLTYPE *fn_)(%s) = (%s (STDMETHODCALLTYPE *)(%s))fxt_original(This, %d);"
                    % (ret, ptypes, ret, ptypes, slot))
        target = "fn_(%s)" % args
    else:
        target = "This->lpVtbl->%s(%s)" % (name, args)
    body.append('    if (!fxt_on || !fxt_begin(&tc_, %s, "%s", "%s", %d, This))' % (direction, iface, name, slot))
    body.append("        return %s;" % target)
    body.extend(arg_lines(params, "    "))
    body.append("    fxt_emit_call(&tc_);")
    body.append("    r_ = %s;" % target)
    body.append("    fxt_ret_%s(&tc_, r_);" % res)
    body.extend(out_lines(params, "    "))
    body.append("    fxt_end(&tc_);")
    body.append("    return r_;")
    body.append("}")
    return fn, "\n".join(body)


def main():
    src, out_h, out_c, out_guids = sys.argv[1:5]
    header = open(src).read()
    ifaces = parse(header)
    missing = [i for i in HOST_IFACES + FILTER_IFACES if i not in ifaces]
    if missing:
        sys.exit("gen-trace.py: %s: no vtable for %s" % (src, ", ".join(missing)))
    h = ["/* Generated by tools/gen-trace.py from wspfwext.h: do not edit. */",
         "#ifndef FWX_FXTRACE_GEN_H", "#define FWX_FXTRACE_GEN_H", '#include "trace.h"', ""]
    for iface in FILTER_IFACES:
        for slot, (ret, name, params) in enumerate(ifaces[iface]):
            fn, text = wrapper(iface, slot, ret, name, params, "FXT_INTO_FILTER", None,
                               "static inline")
            h.append(text)
            h.append("#undef %s_%s" % (iface, name))
            h.append("#define %s_%s %s" % (iface, name, fn))
            h.append("")
    h.append("#endif")
    open(out_h, "w").write("\n".join(h) + "\n")

    c = ["/* Generated by tools/gen-trace.py from wspfwext.h: do not edit. */",
         '#include "fwxhost.h"', '#include "trace.h"', ""]
    tables = []
    for iface in HOST_IFACES:
        names = []
        for slot, (ret, name, params) in enumerate(ifaces[iface]):
            fn, text = wrapper(iface, slot, ret, name, params, "FXT_INTO_HOST", None, "static")
            c.append(text)
            c.append("")
            names.append(fn)
        c.append("static void *const fxtw_%s[] = {\n    %s\n};" % (
            iface, ",\n    ".join("(void *)%s" % n for n in names)))
        tables.append('    { "%s", fxtw_%s, %d },' % (iface, iface, len(names)))
    c.append("")
    c.append("const struct fxt_wrappers fxt_host_wrappers[] = {")
    c.extend(tables)
    c.append("    { NULL, NULL, 0 }")
    c.append("};")
    open(out_c, "w").write("\n".join(c) + "\n")

    g = ["/* Generated by tools/gen-trace.py from wspfwext.h: do not edit.",
         " * The FWX GUIDs as writable variables: [abi] overrides them (shim/com/abi.c).",
         " * Not fwxhost.h: it declares them const. */",
         "#include <windows.h>", ""]
    seen = set()
    for m in re.finditer(r"DEFINE_GUID\((\w+),\s*([^)]*)\)", header):
        name, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
        if name in seen or not (name.startswith("IID_IFWX") or name == "CLSID_FWXFilterAdmin"):
            continue
        seen.add(name)
        g.append("GUID %s = { %s, %s, %s, { %s } };" % (name, args[0], args[1], args[2],
                                                       ", ".join(args[3:11])))
    if len(seen) != 20:
        sys.exit("gen-trace.py: %s: %d FWX GUIDs, expected 20" % (src, len(seen)))
    open(out_guids, "w").write("\n".join(g) + "\n")


if __name__ == "__main__":
    main()
