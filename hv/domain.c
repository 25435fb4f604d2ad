/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libvirt adapter: the desktop domain.
 *
 * Only this file and event.c include libvirt's headers. libvirt's error
 * codes become our errnos in libvirt_errno() and nowhere else; libvirt's own
 * error printing is routed to the debug log.
 *
 * Events. One connection per Desktop, with callbacks for this domain only
 * (libvirt filters by UUID, which desktop_define() keeps across
 * redefinitions): lifecycle, reboot, watchdog, agent lifecycle, and QEMU's
 * GUEST_PANICKED monitor event. libvirt has no API for the Hyper-V crash
 * parameters: QEMU sends them in GUEST_PANICKED's "info", which reaches
 * clients only through libvirt-qemu's monitor events (over remote
 * connections too), and libvirt writes them into the domain's log file as
 * "panic hyper-v: arg1='0x..', ..." (readable on the host only). The monitor
 * event comes first (libvirt forwards it before it handles the panic and
 * queues its "crashed" lifecycle event), so its parameters are kept until
 * libvirt's event reports the crash. Without monitor events (a connection
 * not allowed to register them) the last panic line of the domain log since
 * the domain started is read instead, when that log is a file here. Xen has
 * neither: a crash without parameters.
 *
 * A lost connection (libvirtd restarted, keepalive failed) is reopened from
 * a timer with back-off; what was missed meanwhile is made up from the
 * state found (started, crashed, stopped), not replayed.
 *
 * Calls into libvirt are synchronous and block the loop for their duration;
 * for the guest agent that is up to the timeout given, and at least
 * libvirt's own 5 s guest-sync when the agent hangs.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <time.h>

#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

#include "hv-internal.h"

#define DESKTOP_URI_DEFAULT "qemu:///system"
#define DESKTOP_NAME_DEFAULT "oob-desktop"
#define DESKTOP_MEMORY_MIB_DEFAULT 4096U
#define DESKTOP_VCPUS_DEFAULT 2U
#define DESKTOP_NAME_MAX 64U
/* GUEST_PANICKED details are a few hundred bytes; libvirt's XML a few KiB. */
#define PANIC_DETAILS_MAX (64U * 1024U)
#define DOMAIN_XML_MAX (4U * 1024U * 1024U)
/* How much of the end of a domain log is searched for the panic line. */
#define DOMAIN_LOG_TAIL (256U * 1024U)
/* libvirt's keepalive: a dead libvirtd is noticed within about 20 s. */
#define KEEPALIVE_INTERVAL_SEC 5
#define KEEPALIVE_COUNT 3U
#define RECONNECT_FIRST_USEC (500U * 1000U)
#define RECONNECT_MAX_USEC (30U * 1000U * 1000U)
#define USEC_PER_SEC 1000000ULL
/* libvirt's default for agent commands, used when no timeout is given. */
#define AGENT_TIMEOUT_DEFAULT_SEC 5U
#define AGENT_CHANNEL "org.qemu.guest_agent.0"
/* More users than this logged in at once is not a desktop's answer. */
#define GUEST_USERS_MAX 1024U

static const char *const desktop_state_table[_DESKTOP_STATE_MAX] = {
        [DESKTOP_OFF] = "off",
        [DESKTOP_RUNNING] = "running",
        [DESKTOP_PAUSED] = "paused",
        [DESKTOP_CRASHED] = "crashed",
        [DESKTOP_SHUTTING_DOWN] = "shutting-down",
};
DEFINE_STRING_TABLE_LOOKUP(desktop_state, DesktopState);

static const char *const desktop_event_type_table[_DESKTOP_EVENT_TYPE_MAX] = {
        [DESKTOP_EVENT_STARTED] = "started",
        [DESKTOP_EVENT_STOPPED] = "stopped",
        [DESKTOP_EVENT_CRASHED] = "crashed",
        [DESKTOP_EVENT_WATCHDOG] = "watchdog",
        [DESKTOP_EVENT_REBOOTED] = "rebooted",
        [DESKTOP_EVENT_AGENT_CONNECTED] = "agent-connected",
        [DESKTOP_EVENT_AGENT_DISCONNECTED] = "agent-disconnected",
};
DEFINE_STRING_TABLE_LOOKUP(desktop_event_type, DesktopEventType);

/* The steps of a graceful shutdown, in order. */
typedef enum ShutdownStep {
        SHUTDOWN_AGENT,
        SHUTDOWN_ACPI,
        SHUTDOWN_DESTROY,
        _SHUTDOWN_STEP_MAX,
} ShutdownStep;

static const char *const shutdown_step_table[_SHUTDOWN_STEP_MAX] = {
        [SHUTDOWN_AGENT] = "agent",
        [SHUTDOWN_ACPI] = "acpi",
        [SHUTDOWN_DESTROY] = "destroy",
};

typedef struct ShutdownJob {
        Desktop *desktop;
        sd_event *event;
        ShutdownStep step;
        unsigned agent_timeout_sec, acpi_timeout_sec;
        sd_event_source *source; /* the first step's defer, then each step's timer */
        DesktopDoneCallback done;
        void *userdata;
} ShutdownJob;

enum {
        CALLBACK_LIFECYCLE,
        CALLBACK_REBOOT,
        CALLBACK_WATCHDOG,
        CALLBACK_AGENT,
        _CALLBACK_MAX,
};

struct Desktop {
        unsigned n_ref;
        char *uri;
        char *name;
        virConnectPtr conn;
        virDomainPtr dom;
        int callbacks[_CALLBACK_MAX]; /* libvirt's callback ids, -1 when none */
        int monitor_callback;
        bool close_callback;
        bool closed; /* desktop_close() was called */

        DesktopEventHandler handler;
        void *userdata;

        bool running; /* as the events said last */
        bool agent_connected;
        bool have_panic; /* GUEST_PANICKED seen, libvirt's "crashed" to come */
        CrashInfo panic;
        bool panicked; /* this boot ended in a panic (until the next start or reset) */

        ShutdownJob *shutdown;
        sd_event_source *reconnect;
        uint64_t reconnect_usec;
};

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                return 0;
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000U;
}

/* ---- libvirt errors --------------------------------------------------------- */

static void on_libvirt_error(void *userdata, virErrorPtr err) {
        if (err)
                log_debug("libvirt: %s (code %d, domain %d)", err->message ? err->message : "(no message)",
                          err->code, err->domain);
}

int libvirt_init(void) {
        static bool initialized;

        if (initialized)
                return 0;
        if (virInitialize() < 0)
                return -EIO;
        /* Errors reach the caller as errnos and the debug log, never stderr. */
        virSetErrorFunc(NULL, on_libvirt_error);
        initialized = true;
        return 0;
}

/* The errno for libvirt's last error (and its code, for the callers that
 * tell finer cases apart), then forget it. */
static int libvirt_errno_code(int *ret_code) {
        virErrorPtr err = virGetLastError();
        int code = err ? err->code : VIR_ERR_INTERNAL_ERROR, r;

        switch (code) {
        case VIR_ERR_NO_DOMAIN:
                r = -ENOENT;
                break;
        case VIR_ERR_OPERATION_INVALID: /* e.g. "domain is already running" */
                r = -EBUSY;
                break;
        case VIR_ERR_AGENT_UNRESPONSIVE: /* not connected, or no answer */
        case VIR_ERR_OPERATION_TIMEOUT:
                r = -ETIMEDOUT;
                break;
        case VIR_ERR_AGENT_UNSYNCED:
                r = -EPROTO;
                break;
        case VIR_ERR_NO_SUPPORT:
        case VIR_ERR_ARGUMENT_UNSUPPORTED:
        case VIR_ERR_CONFIG_UNSUPPORTED:
                r = -EOPNOTSUPP;
                break;
        case VIR_ERR_NO_CONNECT:
        case VIR_ERR_INVALID_CONN:
                r = -ENOTCONN;
                break;
        case VIR_ERR_AUTH_FAILED:
        case VIR_ERR_AUTH_CANCELLED:
        case VIR_ERR_AUTH_UNAVAILABLE:
        case VIR_ERR_ACCESS_DENIED:
                r = -EACCES;
                break;
        case VIR_ERR_OPERATION_DENIED:
                r = -EPERM;
                break;
        case VIR_ERR_NO_MEMORY:
                r = -ENOMEM;
                break;
        case VIR_ERR_XML_ERROR:
        case VIR_ERR_XML_DETAIL:
        case VIR_ERR_INVALID_ARG:
                r = -EINVAL;
                break;
        case VIR_ERR_DOM_EXIST:
                r = -EEXIST;
                break;
        default: /* internal, system, RPC, operation failed */
                r = -EIO;
                break;
        }
        virResetLastError();
        if (ret_code)
                *ret_code = code;
        return r;
}

static int libvirt_errno(void) {
        return libvirt_errno_code(NULL);
}

/* virConnectOpen's failures: no daemon answering is -ECONNREFUSED. */
static int connection_open(const char *uri, virConnectPtr *ret) {
        virConnectPtr c;
        int code, r;

        r = libvirt_init();
        if (r < 0)
                return r;
        c = virConnectOpen(uri);
        if (!c) {
                r = libvirt_errno_code(&code);
                if (code == VIR_ERR_SYSTEM_ERROR || code == VIR_ERR_NO_CONNECT || code == VIR_ERR_RPC)
                        r = -ECONNREFUSED;
                log_debug_errno(r, "libvirt: cannot connect to %s: %m", uri);
                return r;
        }
        *ret = c;
        return 0;
}

static void connection_closep(virConnectPtr *c) {
        if (*c)
                virConnectClose(*c);
}
static void domain_freep(virDomainPtr *d) {
        if (*d)
                virDomainFree(*d);
}
#define _cleanup_conn_ _cleanup_(connection_closep)
#define _cleanup_domain_ _cleanup_(domain_freep)

static int domain_xml(virDomainPtr dom, bool inactive, char **ret) {
        char *xml = virDomainGetXMLDesc(dom, inactive ? VIR_DOMAIN_XML_INACTIVE : 0);

        if (!xml)
                return libvirt_errno();
        if (strlen(xml) > DOMAIN_XML_MAX) {
                free(xml);
                return -EFBIG;
        }
        *ret = xml;
        return 0;
}

/* ---- crash parameters -------------------------------------------------------- */

void crash_info_done(CrashInfo *c) {
        if (!c)
                return;
        free(c->reason);
        *c = (CrashInfo){};
}

static int crash_info_set(CrashInfo *c, bool hyperv, const uint64_t args[5], const char *reason) {
        char *s = strdup(reason);

        if (!s)
                return -ENOMEM;
        crash_info_done(c);
        c->hyperv = hyperv;
        if (hyperv) {
                c->stop_code = args[0];
                for (size_t i = 0; i < 4; i++)
                        c->params[i] = args[i + 1];
        }
        c->reason = s;
        return 0;
}

/*
 * jansson keeps integers in a long long and refuses larger ones, but the
 * Hyper-V parameters are unsigned 64-bit values (kernel addresses above
 * 2^63 are common). Every number outside a string is wrapped in quotes first,
 * so jansson sees strings and safe_atou64() reads them exactly.
 */
static char *json_quote_numbers(const char *s) {
        size_t n = strlen(s);
        char *out = malloc(n * 3 + 1), *o = out;
        bool in_string = false;

        if (!out)
                return NULL;
        for (size_t i = 0; i < n;) {
                char c = s[i];

                if (in_string) {
                        *o++ = c;
                        i++;
                        if (c == '\\' && i < n)
                                *o++ = s[i++];
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"') {
                        in_string = true;
                        *o++ = c;
                        i++;
                } else if (c == '-' || (c >= '0' && c <= '9')) {
                        *o++ = '"';
                        while (i < n && strchr("0123456789+-.eE", s[i]))
                                *o++ = s[i++];
                        *o++ = '"';
                } else {
                        *o++ = c;
                        i++;
                }
        }
        *o = 0;
        return out;
}

int crash_info_from_qemu_panic(const char *details, CrashInfo *ret) {
        _cleanup_(json_decrefp) json_t *root = NULL;
        _cleanup_free_ char *quoted = NULL;
        const char *type;
        json_t *info;
        uint64_t args[5] = {};

        assert_return(details, -EINVAL);
        assert_return(ret, -EINVAL);

        if (strlen(details) > PANIC_DETAILS_MAX)
                return -EFBIG;
        quoted = json_quote_numbers(details);
        if (!quoted)
                return -ENOMEM;
        root = json_loads(quoted, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(root))
                return -EPROTO;
        info = json_object_get(root, "info");
        if (!info)
                /* QEMU learnt only that the guest panicked: a pvpanic. */
                return crash_info_set(ret, false, args, "pvpanic");
        if (!json_is_object(info))
                return -EPROTO;
        type = json_string_value(json_object_get(info, "type"));
        if (!type || type[0] == 0 || strlen(type) > 32)
                return -EPROTO;
        if (!streq(type, "hyper-v"))
                return crash_info_set(ret, false, args, type); /* "s390", ... */

        for (size_t i = 0; i < 5; i++) {
                char key[8];
                const char *v;

                snprintf(key, sizeof(key), "arg%zu", i + 1);
                v = json_string_value(json_object_get(info, key));
                if (!v || safe_atou64(v, &args[i]) < 0)
                        return -EPROTO;
        }
        return crash_info_set(ret, true, args, "hyper-v");
}

/* One "argN='0xHEX'" of libvirt's panic line; p advanced past it. */
static int parse_log_arg(const char **p, unsigned n, uint64_t *ret) {
        char prefix[16];
        const char *s = *p;
        uint64_t v = 0;
        size_t digits = 0;

        snprintf(prefix, sizeof(prefix), "arg%u='0x", n);
        if (!strneq(s, prefix, strlen(prefix)))
                return -EPROTO;
        s += strlen(prefix);
        for (; *s && *s != '\''; s++, digits++) {
                int d;

                if (*s >= '0' && *s <= '9')
                        d = *s - '0';
                else if (*s >= 'a' && *s <= 'f')
                        d = *s - 'a' + 10;
                else if (*s >= 'A' && *s <= 'F')
                        d = *s - 'A' + 10;
                else
                        return -EPROTO;
                if (digits >= 16)
                        return -EPROTO;
                v = v << 4 | (uint64_t) d;
        }
        if (*s != '\'' || digits == 0)
                return -EPROTO;
        *p = s + 1;
        *ret = v;
        return 0;
}

int crash_info_from_domain_log(const char *text, CrashInfo *ret) {
        static const char marker[] = "panic hyper-v: ";
        const char *line = NULL, *p;
        uint64_t args[5];
        int r;

        assert_return(text, -EINVAL);
        assert_return(ret, -EINVAL);

        /* libvirt writes "<time>: panic hyper-v: arg1='0x7e', arg2='0x..', ..., arg5='0x..'". */
        for (p = text; (p = strstr(p, marker)); p += STRLEN(marker))
                line = p;
        if (!line)
                return -ENOENT;
        p = line + STRLEN(marker);
        for (unsigned i = 0; i < 5; i++) {
                if (i > 0) {
                        if (!strneq(p, ", ", 2))
                                return -EPROTO;
                        p += 2;
                }
                r = parse_log_arg(&p, i + 1, &args[i]);
                if (r < 0)
                        return r;
        }
        if (*p != 0 && *p != '\n' && *p != '\r')
                return -EPROTO;
        return crash_info_set(ret, true, args, "hyper-v");
}

/* ---- libvirt's XML ------------------------------------------------------------- */

/*
 * libvirt formats its XML itself (virBuffer: attributes in single quotes,
 * & < > ' " and control characters escaped as entities), so reading it needs
 * no XML parser: find the element, take the attribute, unescape it.
 */

static int xml_unescape(const char *s, size_t n, char **ret) {
        static const struct {
                const char *entity;
                char c;
        } entities[] = {
                {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&apos;", '\''}, {"&quot;", '"'},
        };
        _cleanup_free_ char *out = malloc(n + 1);
        size_t o = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n;) {
                bool found = false;

                if (s[i] != '&') {
                        out[o++] = s[i++];
                        continue;
                }
                for (size_t k = 0; k < ELEMENTSOF(entities); k++) {
                        size_t l = strlen(entities[k].entity);

                        if (n - i >= l && strneq(s + i, entities[k].entity, l)) {
                                out[o++] = entities[k].c;
                                i += l;
                                found = true;
                                break;
                        }
                }
                if (found)
                        continue;
                if (n - i >= 4 && s[i + 1] == '#') {
                        /* &#NN; or &#xHH; : libvirt escapes control characters this way. */
                        bool hex = s[i + 2] == 'x';
                        size_t j = i + (hex ? 3 : 2);
                        unsigned long v = 0;

                        for (; j < n && s[j] != ';' && j - i < 8; j++) {
                                int d;

                                if (s[j] >= '0' && s[j] <= '9')
                                        d = s[j] - '0';
                                else if (hex && s[j] >= 'a' && s[j] <= 'f')
                                        d = s[j] - 'a' + 10;
                                else if (hex && s[j] >= 'A' && s[j] <= 'F')
                                        d = s[j] - 'A' + 10;
                                else
                                        return -EPROTO;
                                v = v * (hex ? 16 : 10) + (unsigned long) d;
                        }
                        if (j >= n || s[j] != ';' || v == 0 || v > 0x7f)
                                return -EPROTO;
                        out[o++] = (char) v;
                        i = j + 1;
                        continue;
                }
                return -EPROTO;
        }
        out[o] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

/* The value of attribute name in the tag [tag, tag_end): its position and
 * length (still escaped). -ENOENT when absent. */
static int xml_attr_span(const char *tag, const char *tag_end, const char *name, const char **ret_value,
                         size_t *ret_len) {
        size_t l = strlen(name);

        for (const char *p = tag + 1; p + l + 2 < tag_end; p++) {
                const char *v, *q;

                if (p[-1] != ' ' && p[-1] != '\n' && p[-1] != '\t')
                        continue;
                if (!strneq(p, name, l) || p[l] != '=' || (p[l + 1] != '\'' && p[l + 1] != '"'))
                        continue;
                v = p + l + 2;
                q = memchr(v, p[l + 1], (size_t) (tag_end - v));
                if (!q)
                        return -EPROTO;
                *ret_value = v;
                *ret_len = (size_t) (q - v);
                return 0;
        }
        return -ENOENT;
}

static int xml_attr(const char *tag, const char *tag_end, const char *name, char **ret) {
        const char *v;
        size_t l;
        int r;

        r = xml_attr_span(tag, tag_end, name, &v, &l);
        if (r < 0)
                return r;
        return xml_unescape(v, l, ret);
}

/* The next start tag <name ...> or <name/> at or after p, before end:
 * [*ret_tag, *ret_tag_end) spans from '<' to '>'. */
static bool xml_next_tag(const char *p, const char *end, const char *name, const char **ret_tag,
                         const char **ret_tag_end) {
        size_t l = strlen(name);

        for (; p && p < end; p++) {
                const char *e;

                p = memchr(p, '<', (size_t) (end - p));
                if (!p)
                        return false;
                if ((size_t) (end - p) <= l + 1 || !strneq(p + 1, name, l) ||
                    (p[l + 1] != ' ' && p[l + 1] != '>' && p[l + 1] != '/' && p[l + 1] != '\n'))
                        continue;
                e = memchr(p, '>', (size_t) (end - p));
                if (!e)
                        return false;
                *ret_tag = p;
                *ret_tag_end = e + 1;
                return true;
        }
        return false;
}

/* The <disk>...</disk> element whose <target dev=...> is dev. */
static int xml_find_disk(const char *xml, const char *dev, const char **ret_start, const char **ret_end) {
        const char *end = xml + strlen(xml), *p = xml, *tag, *tag_end;

        while (xml_next_tag(p, end, "disk", &tag, &tag_end)) {
                const char *close = strstr(tag_end, "</disk>"), *t, *t_end;
                _cleanup_free_ char *target = NULL;

                if (!close)
                        return -EPROTO;
                close += STRLEN("</disk>");
                p = close;
                if (!xml_next_tag(tag_end, close, "target", &t, &t_end))
                        continue;
                if (xml_attr(t, t_end, "dev", &target) < 0 || !streq(target, dev))
                        continue;
                *ret_start = tag;
                *ret_end = close;
                return 0;
        }
        return -ENOENT;
}

/* The disk's own <source> (not one of a <backingStore> in live XML) and its
 * file attribute's span. */
static int xml_disk_source_file(const char *disk, const char *disk_end, const char **ret_value,
                                size_t *ret_len) {
        const char *tag, *tag_end, *backing = strstr(disk, "<backingStore");

        if (backing && backing < disk_end)
                disk_end = backing;
        if (!xml_next_tag(disk, disk_end, "source", &tag, &tag_end))
                return -ENOENT;
        return xml_attr_span(tag, tag_end, "file", ret_value, ret_len);
}

int domain_xml_disk_source(const char *xml, const char *dev, char **ret_path) {
        const char *start, *end, *v;
        size_t l;
        int r;

        assert_return(xml, -EINVAL);
        assert_return(dev, -EINVAL);
        assert_return(ret_path, -EINVAL);

        r = xml_find_disk(xml, dev, &start, &end);
        if (r < 0)
                return r;
        r = xml_disk_source_file(start, end, &v, &l);
        if (r < 0)
                return r;
        return xml_unescape(v, l, ret_path);
}

/* Append s to f with the five XML entities escaped; control characters,
 * which no attribute here may carry, are refused. */
static int xml_escape_put(FILE *f, const char *s) {
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c < 0x20 || c == 0x7f)
                        return -EINVAL;
                switch (c) {
                case '&':
                        fputs("&amp;", f);
                        break;
                case '<':
                        fputs("&lt;", f);
                        break;
                case '>':
                        fputs("&gt;", f);
                        break;
                case '\'':
                        fputs("&apos;", f);
                        break;
                case '"':
                        fputs("&quot;", f);
                        break;
                default:
                        fputc(c, f);
                }
        }
        return 0;
}

/* A string built through a FILE: open_memstream, closed by the caller. */
typedef struct MemStream {
        FILE *f;
        char *buf;
        size_t size;
} MemStream;

static int mem_stream_open(MemStream *m) {
        *m = (MemStream){};
        m->f = open_memstream(&m->buf, &m->size);
        return m->f ? 0 : -ENOMEM;
}

static void mem_stream_done(MemStream *m) {
        if (m->f)
                fclose(m->f);
        free(m->buf);
        *m = (MemStream){};
}

/* Close the stream and hand out its string. */
static int mem_stream_take(MemStream *m, char **ret) {
        int r = ferror(m->f) ? -ENOMEM : 0;

        if (fclose(m->f) != 0)
                r = -ENOMEM;
        m->f = NULL;
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m->buf);
        return 0;
}

int domain_xml_disk_with_source(const char *xml, const char *dev, const char *path, char **ret_disk_xml) {
        _cleanup_(mem_stream_done) MemStream m = {};
        const char *start, *end, *v;
        size_t l;
        int r;

        assert_return(xml, -EINVAL);
        assert_return(dev, -EINVAL);
        assert_return(path, -EINVAL);
        assert_return(ret_disk_xml, -EINVAL);

        r = xml_find_disk(xml, dev, &start, &end);
        if (r < 0)
                return r;
        r = xml_disk_source_file(start, end, &v, &l);
        if (r < 0)
                return r;
        r = mem_stream_open(&m);
        if (r < 0)
                return r;
        /* The element as libvirt wrote it (driver, address, ...), only the file changed. */
        fwrite(start, 1, (size_t) (v - start), m.f);
        r = xml_escape_put(m.f, path);
        if (r < 0)
                return r;
        fwrite(v + l, 1, (size_t) (end - (v + l)), m.f);
        return mem_stream_take(&m, ret_disk_xml);
}

bool domain_xml_agent_connected(const char *xml) {
        const char *end, *p, *tag, *tag_end;

        if (!xml)
                return false;
        end = xml + strlen(xml);
        for (p = xml; xml_next_tag(p, end, "target", &tag, &tag_end); p = tag_end) {
                _cleanup_free_ char *name = NULL, *state = NULL;

                if (xml_attr(tag, tag_end, "name", &name) < 0 || !streq(name, AGENT_CHANNEL))
                        continue;
                return xml_attr(tag, tag_end, "state", &state) >= 0 && streq(state, "connected");
        }
        return false;
}

int domain_xml_console_log(const char *xml, char **ret_path) {
        const char *end, *tag, *tag_end, *close, *log, *log_end;

        assert_return(xml, -EINVAL);
        assert_return(ret_path, -EINVAL);

        end = xml + strlen(xml);
        if (!xml_next_tag(xml, end, "serial", &tag, &tag_end))
                return -ENOENT;
        close = strstr(tag_end, "</serial>");
        if (!close)
                return -ENOENT;
        if (!xml_next_tag(tag_end, close, "log", &log, &log_end))
                return -ENOENT;
        return xml_attr(log, log_end, "file", ret_path);
}

/* ---- the template ------------------------------------------------------------- */

/* hv/desktop.xml, byte for byte (tests/hv/test-domain.c compares them). */
const char desktop_xml_template[] =
        "<!-- SPDX-License-Identifier: LGPL-2.1-or-later -->\n"
        "<!--\n"
        "  The desktop domain, as desktop_define() (hv/domain.c) defines it. domain.c\n"
        "  carries this file as a C string; tests/hv/test-domain.c checks that the two\n"
        "  are the same, byte for byte. @WORDS@ are filled in by desktop_define():\n"
        "  plain values are XML-escaped, @UUID@ @OS@ @BOOT@ @CPU@ @CONSOLE_LOG@ are\n"
        "  elements or attributes it writes itself (empty when not needed).\n"
        "\n"
        "  Choices:\n"
        "  - on_crash destroy: a panic (Hyper-V crash MSRs or pvpanic) makes QEMU stop\n"
        "    (libvirt runs it with -no-shutdown), libvirt reports a \"crashed\" lifecycle\n"
        "    event (with the STOP code in QEMU's GUEST_PANICKED event) and then powers\n"
        "    the domain off: the crash is reported, never silently restarted, and the\n"
        "    system disk is free to be reverted at once. The domain then reads\n"
        "    \"shut off (crashed)\", which desktop_state() calls \"crashed\".\n"
        "  - watchdog action none: a watchdog that fires is reported (a \"watchdog\"\n"
        "    event) and nothing else happens; the guard decides (ask the agent,\n"
        "    destroy, revert). A hang may be a false alarm on a loaded host; a reset\n"
        "    or poweroff here would lose the user's session before anyone looked.\n"
        "  - on_reboot restart: a reboot is a reboot (an event, not a stop).\n"
        "  - both panic devices: the Hyper-V crash MSRs carry Windows' STOP code and\n"
        "    its four arguments; the ISA pvpanic (found through ACPI) serves guests\n"
        "    that have its driver (the stand-in's Linux, virtio-win's pvpanic).\n"
        "  - disks on virtio, the system disk first (the guest sees vda, vdb): the\n"
        "    system disk is the active overlay of a qcow2 chain (never probed: the\n"
        "    format is given), the user-data disk is separate and never snapshotted.\n"
        "    cache writeback (QEMU's default; works on every file system, guest\n"
        "    flushes are honoured), discard unmap (TRIM keeps overlays small).\n"
        "  - the QEMU guest agent channel (boot health, graceful shutdown).\n"
        "  - the serial console logged by virtlogd (rotated), for diagnostics and for\n"
        "    the tests, which read the stand-in's console from it.\n"
        "  - clock localtime: Windows keeps the real-time clock in local time.\n"
        "  - no display: the host's platform adds its own.\n"
        "-->\n"
        "<domain type='@TYPE@'>\n"
        "  <name>@NAME@</name>@UUID@\n"
        "  <title>oob desktop</title>\n"
        "  <memory unit='MiB'>@MEMORY_MIB@</memory>\n"
        "  <vcpu>@VCPUS@</vcpu>\n"
        "  <os@OS@>\n"
        "    <type arch='x86_64' machine='q35'>hvm</type>@BOOT@\n"
        "  </os>\n"
        "  <features>\n"
        "    <acpi/>\n"
        "    <apic/>\n"
        "    <hyperv mode='custom'>\n"
        "      <relaxed state='on'/>\n"
        "      <vapic state='on'/>\n"
        "      <spinlocks state='on' retries='8191'/>\n"
        "    </hyperv>\n"
        "  </features>@CPU@\n"
        "  <clock offset='localtime'/>\n"
        "  <on_poweroff>destroy</on_poweroff>\n"
        "  <on_reboot>restart</on_reboot>\n"
        "  <on_crash>destroy</on_crash>\n"
        "  <devices>\n"
        "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='qcow2' cache='writeback' discard='unmap'/>\n"
        "      <source file='@SYSTEM_DISK@'/>\n"
        "      <target dev='vda' bus='virtio'/>\n"
        "    </disk>\n"
        "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='qcow2' cache='writeback' discard='unmap'/>\n"
        "      <source file='@DATA_DISK@'/>\n"
        "      <target dev='vdb' bus='virtio'/>\n"
        "    </disk>\n"
        "    <serial type='pty'>@CONSOLE_LOG@\n"
        "      <target port='0'/>\n"
        "    </serial>\n"
        "    <console type='pty'>\n"
        "      <target type='serial' port='0'/>\n"
        "    </console>\n"
        "    <channel type='unix'>\n"
        "      <source mode='bind'/>\n"
        "      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
        "    </channel>\n"
        "    <watchdog model='i6300esb' action='none'/>\n"
        "    <panic model='hyperv'/>\n"
        "    <panic model='isa'/>\n"
        "    <memballoon model='none'/>\n"
        "  </devices>\n"
        "</domain>\n";

static bool desktop_name_is_valid(const char *name) {
        size_t n = strlen(name);

        /* It names the domain and its console log file. */
        if (n == 0 || n > DESKTOP_NAME_MAX || name[0] == '.' || name[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
                      (name[i] >= '0' && name[i] <= '9') || strchr("._+-", name[i])))
                        return false;
        return true;
}

static int render_fragment(FILE *f, const char *key, const DesktopDefinition *def, const char *uuid,
                           const char *console_log) {
        int r = 0;

        if (streq(key, "TYPE"))
                fputs(def->kvm ? "kvm" : "qemu", f);
        else if (streq(key, "NAME"))
                r = xml_escape_put(f, def->name);
        else if (streq(key, "UUID")) {
                if (uuid) {
                        fputs("\n  <uuid>", f);
                        r = xml_escape_put(f, uuid);
                        fputs("</uuid>", f);
                }
        } else if (streq(key, "MEMORY_MIB"))
                fprintf(f, "%u", def->memory_mib);
        else if (streq(key, "VCPUS"))
                fprintf(f, "%u", def->vcpus);
        else if (streq(key, "OS")) {
                /* Without a kernel, a real desktop: UEFI firmware chosen by libvirt. */
                if (!def->kernel)
                        fputs(" firmware='efi'", f);
        } else if (streq(key, "BOOT")) {
                if (!def->kernel) {
                        fputs("\n    <boot dev='hd'/>", f);
                        return 0;
                }
                fputs("\n    <kernel>", f);
                r = xml_escape_put(f, def->kernel);
                fputs("</kernel>", f);
                if (r >= 0 && def->initrd) {
                        fputs("\n    <initrd>", f);
                        r = xml_escape_put(f, def->initrd);
                        fputs("</initrd>", f);
                }
                if (r >= 0 && def->cmdline) {
                        fputs("\n    <cmdline>", f);
                        r = xml_escape_put(f, def->cmdline);
                        fputs("</cmdline>", f);
                }
        } else if (streq(key, "CPU")) {
                if (def->kvm)
                        fputs("\n  <cpu mode='host-passthrough' check='none'/>", f);
        } else if (streq(key, "SYSTEM_DISK"))
                r = xml_escape_put(f, def->system_disk);
        else if (streq(key, "DATA_DISK"))
                r = xml_escape_put(f, def->data_disk);
        else if (streq(key, "CONSOLE_LOG")) {
                if (console_log) {
                        fputs("\n      <log file='", f);
                        r = xml_escape_put(f, console_log);
                        fputs("' append='on'/>", f);
                }
        } else
                return -ENOENT;
        return r;
}

int desktop_render_xml(const DesktopDefinition *def, const char *uuid, const char *console_log, char **ret) {
        _cleanup_(mem_stream_done) MemStream m = {};
        const char *p;
        int r;

        assert_return(def, -EINVAL);
        assert_return(def->name && def->system_disk && def->data_disk, -EINVAL);
        assert_return(ret, -EINVAL);

        r = mem_stream_open(&m);
        if (r < 0)
                return r;
        /* From the root element on: the comments before it describe the
         * placeholders and are not for libvirt. */
        p = strstr(desktop_xml_template, "<domain ");
        assert(p);
        while (*p) {
                const char *at = strchr(p, '@'), *close;
                char key[32];
                size_t l;

                if (!at) {
                        fputs(p, m.f);
                        break;
                }
                fwrite(p, 1, (size_t) (at - p), m.f);
                close = strchr(at + 1, '@');
                l = close ? (size_t) (close - at - 1) : 0;
                if (!close || l == 0 || l >= sizeof(key) ||
                    strspn(at + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != l) {
                        fputc('@', m.f);
                        p = at + 1;
                        continue;
                }
                memcpy(key, at + 1, l);
                key[l] = 0;
                r = render_fragment(m.f, key, def, uuid, console_log);
                if (r == -ENOENT) {
                        fputc('@', m.f);
                        p = at + 1;
                        continue;
                }
                if (r < 0)
                        return r;
                p = close + 1;
        }
        return mem_stream_take(&m, ret);
}

/* Where the serial console is logged: libvirt's log directory for the
 * driver on the host, or nowhere (a session daemon's is the user's cache). */
static int console_log_path(virConnectPtr conn, const char *name, char **ret) {
        _cleanup_free_ char *uri = virConnectGetURI(conn);
        const char *type = virConnectGetType(conn), *dir = NULL;
        char *p;

        if (!uri || !type)
                return libvirt_errno();
        if (strstr(uri, "/system")) {
                if (streq(type, "QEMU"))
                        dir = "/var/log/libvirt/qemu";
                else if (streq(type, "Xen"))
                        dir = "/var/log/libvirt/libxl";
        }
        if (!dir) {
                *ret = NULL;
                return 0;
        }
        if (asprintf(&p, "%s/%s-console.log", dir, name) < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static bool path_is_absolute(const char *p) {
        return p && p[0] == '/';
}

int desktop_define(const char *uri, const DesktopDefinition *def) {
        _cleanup_conn_ virConnectPtr conn = NULL;
        _cleanup_domain_ virDomainPtr old = NULL, dom = NULL;
        _cleanup_free_ char *xml = NULL, *console_log = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN];
        DesktopDefinition d;
        int r;

        assert_return(def, -EINVAL);
        assert_return(path_is_absolute(def->system_disk), -EINVAL);
        assert_return(path_is_absolute(def->data_disk), -EINVAL);
        assert_return(!def->kernel || path_is_absolute(def->kernel), -EINVAL);
        assert_return(!def->initrd || path_is_absolute(def->initrd), -EINVAL);
        assert_return(def->kernel || (!def->initrd && !def->cmdline), -EINVAL);

        d = *def;
        if (!d.name)
                d.name = DESKTOP_NAME_DEFAULT;
        if (!desktop_name_is_valid(d.name))
                return -EINVAL;
        if (d.memory_mib == 0)
                d.memory_mib = DESKTOP_MEMORY_MIB_DEFAULT;
        if (d.vcpus == 0)
                d.vcpus = DESKTOP_VCPUS_DEFAULT;

        r = connection_open(uri ?: DESKTOP_URI_DEFAULT, &conn);
        if (r < 0)
                return r;

        /* Redefining keeps the UUID: a domain of the same name with another
         * UUID is refused by libvirt, and open Desktops filter events by it. */
        old = virDomainLookupByName(conn, d.name);
        if (old) {
                if (virDomainGetUUIDString(old, uuid) < 0)
                        return libvirt_errno();
        } else {
                r = libvirt_errno();
                if (r != -ENOENT)
                        return r;
        }
        r = console_log_path(conn, d.name, &console_log);
        if (r < 0)
                return r;
        r = desktop_render_xml(&d, old ? uuid : NULL, console_log, &xml);
        if (r < 0)
                return r;
        dom = virDomainDefineXML(conn, xml);
        if (!dom)
                return libvirt_errno();
        return 0;
}

int desktop_undefine(const char *uri, const char *name) {
        _cleanup_conn_ virConnectPtr conn = NULL;
        _cleanup_domain_ virDomainPtr dom = NULL;
        int r;

        name = name ?: DESKTOP_NAME_DEFAULT;
        r = connection_open(uri ?: DESKTOP_URI_DEFAULT, &conn);
        if (r < 0)
                return r;
        dom = virDomainLookupByName(conn, name);
        if (!dom)
                return libvirt_errno();
        r = virDomainIsActive(dom);
        if (r < 0)
                return libvirt_errno();
        if (r > 0)
                /* Never power the user's desktop off as a side effect. */
                return -EBUSY;
        /* UEFI variables and libvirt's metadata go with the domain; the disks stay. */
        if (virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_NVRAM | VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                                VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                                VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA) < 0)
                return libvirt_errno();
        return 0;
}

/* ---- the Desktop ---------------------------------------------------------------- */

static void shutdown_job_free(ShutdownJob *j);
static void shutdown_job_finish(ShutdownJob *j, int error);
static int reconnect_schedule(Desktop *d);
static void on_connection_closed(virConnectPtr conn, int reason, void *userdata);

static Desktop *desktop_ref(Desktop *d) {
        d->n_ref++;
        return d;
}

static void connection_detach(Desktop *d) {
        if (d->conn) {
                for (size_t i = 0; i < _CALLBACK_MAX; i++)
                        if (d->callbacks[i] >= 0)
                                (void) virConnectDomainEventDeregisterAny(d->conn, d->callbacks[i]);
                if (d->monitor_callback >= 0)
                        (void) virConnectDomainQemuMonitorEventDeregister(d->conn, d->monitor_callback);
                virResetLastError();
        }
        for (size_t i = 0; i < _CALLBACK_MAX; i++)
                d->callbacks[i] = -1;
        d->monitor_callback = -1;
        if (d->close_callback) {
                d->close_callback = false;
                /* Drops the reference the close callback held. */
                (void) virConnectUnregisterCloseCallback(d->conn, on_connection_closed);
                virResetLastError();
        }
        if (d->dom) {
                virDomainFree(d->dom);
                d->dom = NULL;
        }
        if (d->conn) {
                virConnectClose(d->conn);
                d->conn = NULL;
        }
}

static void desktop_free(Desktop *d) {
        connection_detach(d);
        d->reconnect = sd_event_source_disable_unref(d->reconnect);
        crash_info_done(&d->panic);
        free(d->uri);
        free(d->name);
        free(d);
}

static void desktop_unref(Desktop *d) {
        assert(d->n_ref > 0);
        if (--d->n_ref == 0)
                desktop_free(d);
}

/* Deliver one event: the caller's handler, then what it ends. */
static void desktop_emit(Desktop *d, DesktopEventType type, CrashInfo *crash) {
        DesktopEvent ev = {
                .type = type,
                .usec = now_usec(CLOCK_REALTIME),
        };

        if (crash) {
                ev.crash = *crash;
                *crash = (CrashInfo){};
        }
        log_debug("desktop %s: %s%s%s", d->name, desktop_event_type_to_string(type),
                  ev.crash.reason ? " " : "", ev.crash.reason ?: "");

        desktop_ref(d); /* the handler may close it */
        if (d->handler && !d->closed)
                d->handler(d, &ev, d->userdata);
        if (type == DESKTOP_EVENT_STOPPED && d->shutdown)
                shutdown_job_finish(d->shutdown, 0);
        crash_info_done(&ev.crash);
        desktop_unref(d);
}

static void set_agent_connected(Desktop *d, bool connected) {
        if (d->agent_connected == connected)
                return; /* libvirt says "disconnected" on every start */
        d->agent_connected = connected;
        desktop_emit(d, connected ? DESKTOP_EVENT_AGENT_CONNECTED : DESKTOP_EVENT_AGENT_DISCONNECTED, NULL);
}

/* The parameters of the crash libvirt reports: from the GUEST_PANICKED
 * before it, else from the domain log when it is a file here, else none. */
static void crash_info_for_event(Desktop *d, int detail, CrashInfo *ret) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *uri = NULL;
        const char *start, *p;
        ssize_t n;
        off_t size;

        if (d->have_panic) {
                *ret = d->panic;
                d->panic = (CrashInfo){};
                d->have_panic = false;
                return;
        }
        uri = virConnectGetURI(d->conn);
        if (uri && (streq(uri, "qemu:///system") || strneq(uri, "qemu+unix:///system", 19)) &&
            asprintf(&path, "/var/log/libvirt/qemu/%s.log", d->name) >= 0) {
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                size = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
                text = size >= 0 ? malloc(DOMAIN_LOG_TAIL + 1) : NULL;
                if (text) {
                        off_t from = size > (off_t) DOMAIN_LOG_TAIL ? size - (off_t) DOMAIN_LOG_TAIL : 0;

                        n = pread(fd, text, DOMAIN_LOG_TAIL, from);
                        text[n > 0 ? n : 0] = 0;
                        /* Only this boot: after libvirt's last "starting up" line. */
                        for (start = text; (p = strstr(start, ": starting up ")); start = p + 1)
                                ;
                        if (crash_info_from_domain_log(start, ret) >= 0)
                                return;
                }
        }
        virResetLastError();
        (void) crash_info_set(ret, false, (const uint64_t[5]){},
                              detail == VIR_DOMAIN_EVENT_CRASHED_CRASHLOADED ? "crashloaded" : "panicked");
}

static void on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *userdata) {
        Desktop *d = userdata;
        CrashInfo crash = {};

        switch (event) {
        case VIR_DOMAIN_EVENT_STARTED:
                d->running = true;
                d->panicked = d->have_panic = false;
                crash_info_done(&d->panic);
                d->agent_connected = false;
                desktop_emit(d, DESKTOP_EVENT_STARTED, NULL);
                break;
        case VIR_DOMAIN_EVENT_STOPPED:
                d->running = false;
                desktop_ref(d);
                set_agent_connected(d, false);
                if (!d->closed)
                        desktop_emit(d, DESKTOP_EVENT_STOPPED, NULL);
                desktop_unref(d);
                break;
        case VIR_DOMAIN_EVENT_CRASHED:
                crash_info_for_event(d, detail, &crash);
                d->panicked = true;
                desktop_emit(d, DESKTOP_EVENT_CRASHED, &crash);
                crash_info_done(&crash);
                break;
        default:
                /* Suspended, resumed, defined, ...: not the guard's business. */
                log_debug("desktop %s: lifecycle event %d/%d", d->name, event, detail);
        }
}

static void on_reboot(virConnectPtr conn, virDomainPtr dom, void *userdata) {
        Desktop *d = userdata;

        d->panicked = d->have_panic = false;
        crash_info_done(&d->panic);
        desktop_emit(d, DESKTOP_EVENT_REBOOTED, NULL);
}

static void on_watchdog(virConnectPtr conn, virDomainPtr dom, int action, void *userdata) {
        desktop_emit(userdata, DESKTOP_EVENT_WATCHDOG, NULL);
}

static void on_agent(virConnectPtr conn, virDomainPtr dom, int state, int reason, void *userdata) {
        set_agent_connected(userdata, state == VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED);
}

static void on_monitor_event(virConnectPtr conn, virDomainPtr dom, const char *event, long long seconds,
                             unsigned micros, const char *details, void *userdata) {
        Desktop *d = userdata;
        CrashInfo c = {};
        int r;

        if (!event || !streq(event, "GUEST_PANICKED"))
                return;
        r = crash_info_from_qemu_panic(details ?: "{}", &c);
        if (r < 0) {
                log_debug_errno(r, "desktop %s: unreadable GUEST_PANICKED details: %m", d->name);
                return;
        }
        /* Kept for libvirt's "crashed" event, which follows: reporting the
         * crash from here would be sooner, but a caller destroying the
         * desktop at once would pre-empt libvirt's own handling of the panic
         * (no crashed event, no panic line in the domain log, no on_crash).
         * QEMU pauses the guest at the first panic: one per crash, but
         * should both devices report, the Hyper-V one wins. */
        if (d->have_panic && d->panic.hyperv && !c.hyperv) {
                crash_info_done(&c);
                return;
        }
        crash_info_done(&d->panic);
        d->panic = c;
        d->have_panic = true;
}

static void on_connection_closed(virConnectPtr conn, int reason, void *userdata) {
        Desktop *d = userdata;

        log_debug("desktop %s: connection to %s closed (reason %d), reconnecting", d->name, d->uri, reason);
        (void) reconnect_schedule(d);
}

/* libvirt's VIR_DOMAIN_EVENT_CALLBACK() cast, through void (*)(void) so that
 * -Wcast-function-type knows it is meant. */
#define EVENT_CALLBACK(cb) ((virConnectDomainEventGenericCallback) (void (*)(void))(cb))

/* Open the connection, find the domain, subscribe to its events. */
static int connection_attach(Desktop *d) {
        static const struct {
                int id;
                virConnectDomainEventGenericCallback cb;
                bool required;
        } events[_CALLBACK_MAX] = {
                [CALLBACK_LIFECYCLE] = {VIR_DOMAIN_EVENT_ID_LIFECYCLE, EVENT_CALLBACK(on_lifecycle), true},
                [CALLBACK_REBOOT] = {VIR_DOMAIN_EVENT_ID_REBOOT, EVENT_CALLBACK(on_reboot), false},
                [CALLBACK_WATCHDOG] = {VIR_DOMAIN_EVENT_ID_WATCHDOG, EVENT_CALLBACK(on_watchdog), false},
                [CALLBACK_AGENT] = {VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, EVENT_CALLBACK(on_agent), false},
        };
        int r;

        assert(!d->conn);
        r = connection_open(d->uri, &d->conn);
        if (r < 0)
                return r;
        d->dom = virDomainLookupByName(d->conn, d->name);
        if (!d->dom) {
                r = libvirt_errno();
                goto fail;
        }
        if (!desktop_event_loop())
                return 0; /* no loop, no events (a one-shot tool) */

        for (size_t i = 0; i < _CALLBACK_MAX; i++) {
                d->callbacks[i] = virConnectDomainEventRegisterAny(d->conn, d->dom, events[i].id,
                                                                   events[i].cb, d, NULL);
                if (d->callbacks[i] < 0) {
                        r = libvirt_errno();
                        if (events[i].required)
                                goto fail;
                        log_debug_errno(r, "desktop %s: event %d not available: %m", d->name, events[i].id);
                }
        }
        /* QEMU only; elsewhere crashes come without parameters. */
        d->monitor_callback = virConnectDomainQemuMonitorEventRegister(d->conn, d->dom, "GUEST_PANICKED",
                                                                       on_monitor_event, d, NULL, 0);
        if (d->monitor_callback < 0)
                log_debug_errno(libvirt_errno(),
                                "desktop %s: no QEMU monitor events, crashes without parameters: %m",
                                d->name);
        if (virConnectRegisterCloseCallback(d->conn, on_connection_closed, d, NULL) < 0) {
                r = libvirt_errno();
                goto fail;
        }
        d->close_callback = true;
        if (virConnectSetKeepAlive(d->conn, KEEPALIVE_INTERVAL_SEC, KEEPALIVE_COUNT) < 0)
                log_debug_errno(libvirt_errno(), "desktop %s: no keepalive: %m", d->name);
        return 0;

fail:
        connection_detach(d);
        return r;
}

/* Active, and is the agent connected (from the live XML)? */
static int domain_query(Desktop *d, bool *ret_running, bool *ret_agent) {
        _cleanup_free_ char *xml = NULL;
        int r;

        r = virDomainIsActive(d->dom);
        if (r < 0)
                return libvirt_errno();
        *ret_running = r > 0;
        *ret_agent = false;
        if (*ret_running && domain_xml(d->dom, false, &xml) >= 0)
                *ret_agent = domain_xml_agent_connected(xml);
        return 0;
}

static int on_reconnect(sd_event_source *s, uint64_t usec, void *userdata) {
        Desktop *d = userdata;
        bool running, agent;
        int state = 0, reason = 0, r;

        connection_detach(d);
        r = connection_attach(d);
        if (r >= 0)
                r = domain_query(d, &running, &agent);
        if (r < 0) {
                log_debug_errno(r, "desktop %s: reconnecting to %s failed, retrying in %" PRIu64 " ms: %m",
                                d->name, d->uri, d->reconnect_usec / 1000U);
                connection_detach(d);
                d->reconnect_usec = MIN(d->reconnect_usec * 2, (uint64_t) RECONNECT_MAX_USEC);
                (void) sd_event_source_set_time_relative(s, d->reconnect_usec);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        log_debug("desktop %s: reconnected to %s", d->name, d->uri);
        d->reconnect_usec = 0;
        d->reconnect = sd_event_source_disable_unref(d->reconnect);

        /* Make up for what was missed: the state now, not the story. */
        desktop_ref(d);
        if (d->running && !running) {
                if (virDomainGetState(d->dom, &state, &reason, 0) >= 0 && state == VIR_DOMAIN_SHUTOFF &&
                    reason == VIR_DOMAIN_SHUTOFF_CRASHED) {
                        CrashInfo crash = {};

                        crash_info_for_event(d, VIR_DOMAIN_EVENT_CRASHED_PANICKED, &crash);
                        d->panicked = true;
                        desktop_emit(d, DESKTOP_EVENT_CRASHED, &crash);
                        crash_info_done(&crash);
                }
                virResetLastError();
                on_lifecycle(d->conn, d->dom, VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_FAILED, d);
        } else if (!d->running && running && !d->closed)
                on_lifecycle(d->conn, d->dom, VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED, d);
        if (!d->closed && d->running)
                set_agent_connected(d, agent);
        desktop_unref(d);
        return 0;
}

static int reconnect_schedule(Desktop *d) {
        sd_event *e = desktop_event_loop();
        int r;

        if (!e || d->reconnect || d->closed)
                return 0;
        d->reconnect_usec = RECONNECT_FIRST_USEC;
        /* Right away (the first attempt), then with back-off. */
        r = sd_event_add_time_relative(e, &d->reconnect, CLOCK_MONOTONIC, 0, 1000, on_reconnect, d);
        if (r < 0)
                return log_debug_errno(r, "desktop %s: cannot schedule reconnecting: %m", d->name);
        (void) sd_event_source_set_description(d->reconnect, "desktop-reconnect");
        return 0;
}

/* The connection for a call: -ENOTCONN while it is being reopened. */
static int desktop_connected(Desktop *d) {
        if (d->conn && virConnectIsAlive(d->conn) == 1)
                return 0;
        virResetLastError();
        if (desktop_event_loop()) {
                (void) reconnect_schedule(d);
                return -ENOTCONN;
        }
        /* No loop: reconnect now (there is nobody to tell about events). */
        connection_detach(d);
        return connection_attach(d);
}

int desktop_open(const DesktopOptions *o, DesktopEventHandler handler, void *userdata, Desktop **ret) {
        Desktop *d;
        int r;

        assert_return(ret, -EINVAL);
        /* Events need the loop: desktop_event_loop_setup() first. */
        assert_return(!handler || desktop_event_loop(), -EINVAL);

        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->n_ref = 1;
        d->monitor_callback = -1;
        for (size_t i = 0; i < _CALLBACK_MAX; i++)
                d->callbacks[i] = -1;
        d->handler = handler;
        d->userdata = userdata;
        d->uri = strdup(o && o->uri ? o->uri : DESKTOP_URI_DEFAULT);
        d->name = strdup(o && o->name ? o->name : DESKTOP_NAME_DEFAULT);
        if (!d->uri || !d->name) {
                desktop_unref(d);
                return -ENOMEM;
        }
        r = connection_attach(d);
        if (r >= 0)
                r = domain_query(d, &d->running, &d->agent_connected);
        if (r < 0) {
                desktop_unref(d);
                return r;
        }
        *ret = d;
        return 0;
}

Desktop *desktop_close(Desktop *d) {
        if (!d)
                return NULL;
        /* A pending shutdown goes without its done(): the caller is gone. */
        if (d->shutdown)
                shutdown_job_free(d->shutdown);
        d->closed = true;
        d->handler = NULL;
        connection_detach(d);
        d->reconnect = sd_event_source_disable_unref(d->reconnect);
        desktop_unref(d);
        return NULL;
}

const char *desktop_name(const Desktop *d) {
        return d ? d->name : NULL;
}

int desktop_state(Desktop *d, DesktopState *ret) {
        int state, reason, r;
        DesktopState s;

        assert_return(d, -EINVAL);
        assert_return(ret, -EINVAL);

        r = desktop_connected(d);
        if (r < 0)
                return r;
        if (virDomainGetState(d->dom, &state, &reason, 0) < 0)
                return libvirt_errno();
        switch (state) {
        case VIR_DOMAIN_RUNNING:
        case VIR_DOMAIN_BLOCKED:
        case VIR_DOMAIN_NOSTATE:
                s = DESKTOP_RUNNING;
                break;
        case VIR_DOMAIN_PAUSED:
                s = reason == VIR_DOMAIN_PAUSED_CRASHED ? DESKTOP_CRASHED : DESKTOP_PAUSED;
                break;
        case VIR_DOMAIN_PMSUSPENDED:
                s = DESKTOP_PAUSED;
                break;
        case VIR_DOMAIN_SHUTDOWN:
                s = DESKTOP_SHUTTING_DOWN;
                break;
        case VIR_DOMAIN_CRASHED:
                s = DESKTOP_CRASHED;
                break;
        case VIR_DOMAIN_SHUTOFF:
                /* on_crash destroy leaves "shut off (crashed)" until the next start. */
                s = reason == VIR_DOMAIN_SHUTOFF_CRASHED ? DESKTOP_CRASHED : DESKTOP_OFF;
                break;
        default:
                return -EPROTO;
        }
        /* What the events said first: QEMU paused the guest at its panic
         * before libvirt, still saying "running", applies on_crash (and when
         * the caller destroyed it first, it is still the boot that crashed). */
        if (d->panicked)
                s = DESKTOP_CRASHED;
        /* Our own graceful shutdown in progress says so too. */
        if (s == DESKTOP_RUNNING && d->shutdown)
                s = DESKTOP_SHUTTING_DOWN;
        *ret = s;
        return 0;
}

int desktop_is_running(Desktop *d, bool *ret) {
        int r;

        assert_return(d, -EINVAL);
        assert_return(ret, -EINVAL);

        r = desktop_connected(d);
        if (r < 0)
                return r;
        /* Active: a QEMU process holds the disks (paused or crashed and kept too). */
        r = virDomainIsActive(d->dom);
        if (r < 0)
                return libvirt_errno();
        *ret = r > 0;
        return 0;
}

int desktop_start(Desktop *d) {
        int r;

        assert_return(d, -EINVAL);

        r = desktop_connected(d);
        if (r < 0)
                return r;
        if (virDomainCreate(d->dom) < 0)
                return libvirt_errno(); /* -EBUSY: already running */
        return 0;
}

int desktop_destroy(Desktop *d) {
        int r;

        assert_return(d, -EINVAL);

        r = desktop_connected(d);
        if (r < 0)
                return r;
        r = virDomainIsActive(d->dom);
        if (r < 0)
                return libvirt_errno();
        if (r == 0)
                return 0; /* already off */
        if (virDomainDestroy(d->dom) < 0) {
                r = libvirt_errno();
                /* It went off by itself meanwhile. */
                if (r == -EBUSY && virDomainIsActive(d->dom) == 0)
                        r = 0;
                virResetLastError();
                return r;
        }
        return 0;
}

/* What the agent's channel says after a call failed with "unresponsive"
 * (libvirt's word for both an agent that is not there and one that does
 * not answer). */
static int agent_unresponsive(Desktop *d) {
        _cleanup_free_ char *xml = NULL;

        if (domain_xml(d->dom, false, &xml) < 0 || !domain_xml_agent_connected(xml)) {
                virResetLastError();
                return -ENOTCONN;
        }
        return -ETIMEDOUT;
}

/* 0 when the connection is up and the domain runs (its agent may answer),
 * -ENOTCONN when it does not run. */
static int desktop_running_for_agent(Desktop *d) {
        int r;

        r = desktop_connected(d);
        if (r < 0)
                return r;
        r = virDomainIsActive(d->dom);
        if (r < 0)
                return libvirt_errno();
        return r == 0 ? -ENOTCONN : 0;
}

int desktop_agent_ping(Desktop *d, unsigned timeout_sec) {
        _cleanup_free_ char *reply = NULL;
        int code, r;

        assert_return(d, -EINVAL);

        r = desktop_running_for_agent(d);
        if (r < 0)
                return r;
        /* 0 would mean "do not wait for the answer": not a ping. */
        reply = virDomainQemuAgentCommand(
                d->dom, "{\"execute\":\"guest-ping\"}",
                (int) MIN(timeout_sec ?: AGENT_TIMEOUT_DEFAULT_SEC, (unsigned) INT_MAX), 0);
        if (reply)
                return 0; /* an error answer is a libvirt error */
        r = libvirt_errno_code(&code);
        if (code == VIR_ERR_AGENT_UNRESPONSIVE || code == VIR_ERR_OPERATION_INVALID)
                return agent_unresponsive(d);
        return r;
}

int agent_info_command_enabled(const char *reply, const char *command) {
        _cleanup_(json_decrefp) json_t *root = NULL;
        const json_t *list, *c;
        size_t i;

        assert_return(reply && command, -EINVAL);

        root = json_loads(reply, JSON_REJECT_DUPLICATES, NULL);
        list = json_object_get(json_object_get(root, "return"), "supported_commands");
        if (!json_is_array(list))
                return -EPROTO;
        json_array_foreach(list, i, c) {
                const char *name = json_string_value(json_object_get(c, "name"));

                if (name && streq(name, command))
                        return json_is_true(json_object_get(c, "enabled"));
        }
        return 0;
}

int guest_users_from_params(struct _virTypedParameter *params, int n, char ***ret_names) {
        _cleanup_strv_free_ char **names = NULL;
        unsigned count = 0;
        int r;

        assert_return(n >= 0, -EINVAL);

        /* libvirt always sets "user.count", 0 when the agent listed nobody. */
        r = virTypedParamsGetUInt(params, n, "user.count", &count);
        if (r != 1) {
                virResetLastError();
                return -EPROTO;
        }
        if (count > GUEST_USERS_MAX)
                return -EPROTO;
        for (unsigned i = 0; i < count; i++) {
                _cleanup_free_ char *entry = NULL;
                char key[64];
                const char *name = NULL, *domain = NULL;

                snprintf(key, sizeof(key), "user.%u.name", i);
                if (virTypedParamsGetString(params, n, key, &name) != 1 || !name || !*name) {
                        virResetLastError();
                        return -EPROTO;
                }
                snprintf(key, sizeof(key), "user.%u.domain", i);
                if (virTypedParamsGetString(params, n, key, &domain) < 0) {
                        virResetLastError();
                        return -EPROTO;
                }
                if (domain && *domain)
                        r = asprintf(&entry, "%s\\%s", domain, name) < 0 ? -ENOMEM : 0;
                else
                        r = (entry = strdup(name)) ? 0 : -ENOMEM;
                if (r < 0)
                        return r;
                r = strv_extend(&names, entry);
                if (r < 0)
                        return r;
        }
        if (ret_names) {
                if (!names) {
                        names = calloc(1, sizeof(char *));
                        if (!names)
                                return -ENOMEM;
                }
                *ret_names = TAKE_PTR(names);
        }
        return (int) count;
}

int desktop_logged_in_users(Desktop *d, char ***ret_names) {
        virTypedParameterPtr params = NULL;
        _cleanup_free_ char *info = NULL;
        int n = 0, code, r;

        assert_return(d, -EINVAL);

        r = desktop_running_for_agent(d);
        if (r < 0)
                return r;
        if (virDomainGetGuestInfo(d->dom, VIR_DOMAIN_GUEST_INFO_USERS, &params, &n, 0) >= 0) {
                r = guest_users_from_params(params, n, ret_names);
                virTypedParamsFree(params, n);
                return r;
        }
        r = libvirt_errno_code(&code);
        if (code == VIR_ERR_AGENT_UNRESPONSIVE || code == VIR_ERR_OPERATION_INVALID)
                return agent_unresponsive(d);
        if (code != VIR_ERR_INTERNAL_ERROR && code != VIR_ERR_OPERATION_FAILED &&
            code != VIR_ERR_OPERATION_UNSUPPORTED)
                return r;
        /* libvirt 9.0 reports the agent's own error answer ("CommandNotFound",
         * "CommandDisabled" by qemu-ga -b) as an internal error, told apart
         * only by its text: the agent's list of commands says whether it has
         * this one. */
        info = virDomainQemuAgentCommand(d->dom, "{\"execute\":\"guest-info\"}",
                                         (int) AGENT_TIMEOUT_DEFAULT_SEC, 0);
        if (!info) {
                virResetLastError();
                return r;
        }
        return agent_info_command_enabled(info, "guest-get-users") == 0 ? -EOPNOTSUPP : r;
}

int desktop_set_system_disk(Desktop *d, const char *path) {
        _cleanup_free_ char *xml = NULL, *disk = NULL;
        int r;

        assert_return(d, -EINVAL);
        assert_return(path_is_absolute(path), -EINVAL);

        r = desktop_connected(d);
        if (r < 0)
                return r;
        r = virDomainIsActive(d->dom);
        if (r < 0)
                return libvirt_errno();
        if (r > 0)
                return -EBUSY;
        r = domain_xml(d->dom, true, &xml);
        if (r < 0)
                return r;
        r = domain_xml_disk_with_source(xml, "vda", path, &disk);
        if (r < 0)
                return r;
        /* libvirt's own way to change one device of the persistent definition. */
        if (virDomainUpdateDeviceFlags(d->dom, disk, VIR_DOMAIN_AFFECT_CONFIG) < 0)
                return libvirt_errno();
        return 0;
}

int desktop_disks(Desktop *d, char **ret_system, char **ret_data) {
        _cleanup_free_ char *xml = NULL, *system = NULL, *data = NULL;
        int r;

        assert_return(d, -EINVAL);

        r = desktop_connected(d);
        if (r < 0)
                return r;
        r = domain_xml(d->dom, true, &xml);
        if (r < 0)
                return r;
        if (ret_system) {
                r = domain_xml_disk_source(xml, "vda", &system);
                if (r < 0)
                        return r;
        }
        if (ret_data) {
                r = domain_xml_disk_source(xml, "vdb", &data);
                if (r < 0)
                        return r;
        }
        if (ret_system)
                *ret_system = TAKE_PTR(system);
        if (ret_data)
                *ret_data = TAKE_PTR(data);
        return 0;
}

int desktop_console_log(Desktop *d, char **ret) {
        _cleanup_free_ char *xml = NULL;
        int r;

        assert_return(d, -EINVAL);
        assert_return(ret, -EINVAL);

        r = desktop_connected(d);
        if (r < 0)
                return r;
        r = domain_xml(d->dom, true, &xml);
        if (r < 0)
                return r;
        return domain_xml_console_log(xml, ret);
}

/* ---- graceful shutdown --------------------------------------------------------- */

static void shutdown_job_free(ShutdownJob *j) {
        if (!j)
                return;
        j->source = sd_event_source_disable_unref(j->source);
        if (j->desktop && j->desktop->shutdown == j)
                j->desktop->shutdown = NULL;
        if (j->event)
                sd_event_unref(j->event);
        free(j);
}

static void shutdown_job_finish(ShutdownJob *j, int error) {
        Desktop *d = j->desktop;
        DesktopDoneCallback done = j->done;
        void *userdata = j->userdata;

        log_debug_errno(error, "desktop %s: shutdown finished at step %s: %m", d->name,
                        shutdown_step_table[j->step]);
        shutdown_job_free(j);
        desktop_ref(d);
        if (done)
                done(d, error, userdata);
        desktop_unref(d);
}

static int on_shutdown_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* Run steps from j->step on until one is under way (its timer armed) or the
 * desktop is off. */
static void shutdown_job_run(ShutdownJob *j) {
        Desktop *d = j->desktop;
        int r;

        j->source = sd_event_source_disable_unref(j->source);
        for (;;) {
                unsigned timeout_sec = 0;

                r = desktop_connected(d);
                if (r >= 0) {
                        r = virDomainIsActive(d->dom);
                        if (r < 0)
                                r = libvirt_errno();
                }
                if (r <= 0) {
                        shutdown_job_finish(j, r); /* 0: it is off */
                        return;
                }

                switch (j->step) {
                case SHUTDOWN_AGENT:
                        timeout_sec = j->agent_timeout_sec;
                        if (timeout_sec == 0 || !d->agent_connected) {
                                r = -ENOTCONN;
                                break;
                        }
                        /* qemu-ga's guest-shutdown: Windows shuts down as from its menu. */
                        r = virDomainShutdownFlags(d->dom, VIR_DOMAIN_SHUTDOWN_GUEST_AGENT) < 0
                                    ? libvirt_errno()
                                    : 0;
                        break;
                case SHUTDOWN_ACPI:
                        timeout_sec = j->acpi_timeout_sec;
                        if (timeout_sec == 0) {
                                r = -ECANCELED;
                                break;
                        }
                        r = virDomainShutdownFlags(d->dom, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) < 0
                                    ? libvirt_errno()
                                    : 0;
                        break;
                case SHUTDOWN_DESTROY:
                        shutdown_job_finish(j, desktop_destroy(d));
                        return;
                default:
                        assert(false);
                        return;
                }
                if (r >= 0) {
                        log_debug("desktop %s: shutdown step %s, waiting up to %u s", d->name,
                                  shutdown_step_table[j->step], timeout_sec);
                        r = sd_event_add_time_relative(j->event, &j->source, CLOCK_MONOTONIC,
                                                       (uint64_t) timeout_sec * USEC_PER_SEC, 10000,
                                                       on_shutdown_timer, j);
                        if (r < 0)
                                shutdown_job_finish(j, r);
                        return;
                }
                log_debug_errno(r, "desktop %s: shutdown step %s skipped: %m", d->name,
                                shutdown_step_table[j->step]);
                j->step++;
        }
}

static int on_shutdown_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ShutdownJob *j = userdata;

        log_debug("desktop %s: shutdown step %s timed out", j->desktop->name, shutdown_step_table[j->step]);
        j->step++;
        shutdown_job_run(j);
        return 0;
}

static int on_shutdown_start(sd_event_source *s, void *userdata) {
        shutdown_job_run(userdata);
        return 0;
}

int desktop_shutdown(Desktop *d, sd_event *e, unsigned agent_timeout_sec, unsigned acpi_timeout_sec,
                     DesktopDoneCallback done, void *userdata) {
        ShutdownJob *j;
        int r;

        assert_return(d, -EINVAL);
        assert_return(e, -EINVAL);

        if (d->shutdown)
                return -EALREADY;
        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        *j = (ShutdownJob){
                .desktop = d,
                .event = sd_event_ref(e),
                .step = SHUTDOWN_AGENT,
                .agent_timeout_sec = agent_timeout_sec,
                .acpi_timeout_sec = acpi_timeout_sec,
                .done = done,
                .userdata = userdata,
        };
        /* From the loop: done() never runs inside this call. */
        r = sd_event_add_defer(e, &j->source, on_shutdown_start, j);
        if (r < 0) {
                shutdown_job_free(j);
                return r;
        }
        d->shutdown = j;
        return 0;
}
