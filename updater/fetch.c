/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The HTTP fetcher: the only file that includes curl.h. CURLcode and HTTP
 * statuses are translated into our errno vocabulary here, once.
 *
 * Everything fetched is untrusted until TUF verified it, so the fetcher's job
 * is to bound what an attacker on the path or a compromised mirror can make
 * us do: a size cap (endless data), a minimum speed and a deadline (slow
 * retrieval), no scheme downgrade on redirect, no plain http except to
 * loopback, and no splicing of a resumed body the server did not send as
 * the range we asked for.
 *
 * There is one transfer implementation: libcurl's multi interface driven by
 * an sd-event loop (a "driver": one CURLM per loop, whose sockets are io
 * sources and whose timeout is one CLOCK_MONOTONIC time source). The daemon
 * attaches the fetcher to its loop; the synchronous calls run the same code
 * on a private loop of the fetcher until their one transfer is done. A
 * fetcher may so drive transfers on several loops; each keeps its own
 * connection cache, which lives as long as the fetcher.
 *
 * Lifetimes. A FetchJob belongs to the fetcher: it is freed right after its
 * done() returns, or by fetch_job_cancel() (done() is then never called).
 * done() is only called from the loop, never from inside fetcher_start() or
 * a libcurl callback, so it may start or cancel transfers and free the
 * fetcher. Sinks run inside libcurl's write callback: they return a negative
 * errno to abort their transfer; cancelling jobs from a sink is deferred
 * until libcurl returns (the job gets no more data and no done()), freeing
 * the fetcher from a sink is not allowed.
 */

#include <arpa/inet.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>

#include "updater.h"

#define FETCH_MAX_REDIRECTS 5L
#define FETCH_DEFAULT_LOW_SPEED_BYTES 1024U
#define FETCH_DEFAULT_LOW_SPEED_SEC 30U
#define FETCH_DEFAULT_CONNECT_TIMEOUT_SEC 30U
#define FETCH_DEFAULT_TOTAL_TIMEOUT_SEC 3600U
/* What a POST accepts of the server's answer when the request names no cap. */
#define FETCH_DEFAULT_POST_RESPONSE_MAX (64U * 1024U)
/* Initial buffer for fetcher_get(); it grows by doubling up to the cap. */
#define FETCH_BUFFER_INITIAL 16384U
/* libcurl asks for timeouts in ms; sd-event would coalesce them by 250 ms. */
#define FETCH_TIMER_ACCURACY_USEC 1000U

typedef struct Driver Driver;
typedef struct DriverSocket DriverSocket;

struct Fetcher {
        FetchOptions options; /* ca_file and user_agent point to our copies */
        char *ca_file;
        char *user_agent;

        sd_event *event;      /* fetcher_attach_event()'s loop */
        sd_event *sync_event; /* the private loop of fetcher_get_stream() */
        bool sync_busy;
        Driver *drivers; /* one per loop that ran a transfer of ours */
};

/* libcurl multi on one sd-event loop. */
struct Driver {
        unsigned n_ref; /* the fetcher's, and one per dispatch in progress */
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        FetchJob *jobs;
        DriverSocket *sockets;
        int error;    /* a socket or timer callback failed: fail every job */
        bool in_curl; /* inside curl_multi_socket_action(): no curl_multi_* calls */
        Driver *next;
};

struct DriverSocket {
        Driver *driver;
        curl_socket_t fd;
        sd_event_source *source;
        DriverSocket *prev, *next;
};

/* One transfer; its state is shared with the libcurl callbacks. */
struct FetchJob {
        Driver *driver;
        CURL *curl;
        struct curl_slist *headers;
        char *url;
        char *range;
        bool post;
        bool added; /* to driver->multi */

        uint64_t max_size;
        uint64_t received;    /* body bytes passed on */
        uint64_t resume_from; /* asked for "bytes=N-" */
        uint64_t announced;   /* Content-Length of the body, 0 if not told */
        FetchSink sink;
        FetchDone done;
        void *userdata;

        bool loopback_only;  /* plain http: only connect to loopback addresses */
        bool length_checked; /* the announced Content-Length was compared */
        bool range_checked;  /* the answer to a resume was checked */
        bool cancelled;      /* no more data, no done(); freed when curl lets go */
        bool in_done;        /* done() runs: freed when it returns */
        int error;           /* set by a callback that aborted the transfer */

        FetchJob *prev, *next;
};

static int curl_global(void) {
        static bool done = false;

        if (done)
                return 0;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -ENOMEM;
        done = true;
        return 0;
}

/* ---- URL policy -------------------------------------------------------- */

static bool host_is_loopback(const char *host) {
        struct in_addr a4;
        struct in6_addr a6;
        size_t n;

        if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
                return true;
        if (inet_pton(AF_INET, host, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        /* curl returns IPv6 literals in brackets. */
        n = strlen(host);
        if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
                char buf[INET6_ADDRSTRLEN + 1];

                if (n - 2 >= sizeof(buf))
                        return false;
                memcpy(buf, host + 1, n - 2);
                buf[n - 2] = 0;
                return inet_pton(AF_INET6, buf, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
        }
        return false;
}

static bool sockaddr_is_loopback(const struct curl_sockaddr *a) {
        if (a->family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) &a->addr;
                return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        }
        if (a->family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) &a->addr;
                return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
        }
        return false;
}

static void curl_free_charp(char **p) {
        curl_free(*p);
}

static void curl_url_cleanupp(CURLU **u) {
        if (*u)
                curl_url_cleanup(*u);
}

/*
 * Decide, without contacting anyone, whether url may be fetched: https
 * always, http only to loopback (or with allow_http), nothing else.
 * ret_scheme gets "https" or "http" (static strings), ret_loopback_only
 * whether plain http was allowed only because the host is loopback.
 */
static int url_check_policy(const Fetcher *f, const char *url, const char **ret_scheme,
                            bool *ret_loopback_only) {
        _cleanup_(curl_url_cleanupp) CURLU *u = NULL;
        _cleanup_(curl_free_charp) char *scheme = NULL, *host = NULL;

        u = curl_url();
        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
                return -EINVAL;
        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
                return -EINVAL;

        if (strcasecmp(scheme, "https") == 0) {
                *ret_scheme = "https";
                *ret_loopback_only = false;
                return 0;
        }
        if (strcasecmp(scheme, "http") != 0)
                return -EPROTONOSUPPORT;

        if (f->options.allow_http) {
                *ret_scheme = "http";
                *ret_loopback_only = false;
                return 0;
        }
        if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
                return -EINVAL;
        if (!host_is_loopback(host))
                return -EPROTONOSUPPORT;
        *ret_scheme = "http";
        *ret_loopback_only = true;
        return 0;
}

/* ---- errors ------------------------------------------------------------------ */

static int http_status_to_errno(long status) {
        switch (status) {
        case 403:
        case 404:
        case 410:
                return -ENOENT;
        default:
                return -EIO;
        }
}

/* The one translation of CURLcode into our vocabulary. */
static int curl_code_to_errno(CURLcode e, long status) {
        switch (e) {
        case CURLE_OK:
                return 0;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_UNSUPPORTED_PROTOCOL:
                return -EPROTONOSUPPORT;
        case CURLE_URL_MALFORMAT:
                return -EINVAL;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        case CURLE_HTTP_RETURNED_ERROR:
                return http_status_to_errno(status);
        case CURLE_RANGE_ERROR:
                return -ERANGE;
        case CURLE_TOO_MANY_REDIRECTS:
                return -ELOOP;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
                /* The server's certificate is not trusted. */
                return -EKEYREJECTED;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
                return -ECONNRESET;
        default:
                return -EIO;
        }
}

/* ---- callbacks of one transfer ---------------------------------------------- */

/* "bytes N-M/TOTAL" (TOTAL may be "*"), starting exactly at offset. */
static bool content_range_starts_at(const char *v, uint64_t offset) {
        uint64_t first = 0, last = 0;
        const char *p = v;

        while (*p == ' ')
                p++;
        if (strncasecmp(p, "bytes", 5) != 0)
                return false;
        p += 5;
        if (*p != ' ')
                return false;
        while (*p == ' ')
                p++;
        if (*p < '0' || *p > '9')
                return false;
        for (; *p >= '0' && *p <= '9'; p++) {
                if (first > (UINT64_MAX - 9) / 10)
                        return false;
                first = first * 10 + (uint64_t) (*p - '0');
        }
        if (*p++ != '-' || *p < '0' || *p > '9')
                return false;
        for (; *p >= '0' && *p <= '9'; p++) {
                if (last > (UINT64_MAX - 9) / 10)
                        return false;
                last = last * 10 + (uint64_t) (*p - '0');
        }
        return *p == '/' && first == offset && last >= first;
}

/*
 * A resumed transfer must be the range we asked for: 206 with a
 * Content-Range starting at resume_from. A 200 is the whole file (the server
 * ignored Range): appending it to what the caller has would splice two
 * bodies, so it is refused before any of it is passed on.
 */
static int job_check_range(FetchJob *j) {
        struct curl_header *h = NULL;
        long status = 0;

        j->range_checked = true;
        if (j->resume_from == 0)
                return 0;
        (void) curl_easy_getinfo(j->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status != 206) {
                log_debug("%s: asked for bytes from %" PRIu64 ", got HTTP %ld", j->url, j->resume_from,
                          status);
                return -ERANGE;
        }
        if (curl_easy_header(j->curl, "Content-Range", 0, CURLH_HEADER, -1, &h) != CURLHE_OK ||
            !content_range_starts_at(h->value, j->resume_from)) {
                log_debug("%s: asked for bytes from %" PRIu64 ", got Content-Range '%s'", j->url,
                          j->resume_from, h ? h->value : "");
                return -ERANGE;
        }
        return 0;
}

/*
 * The endless-data defence. An announced Content-Length over the cap is
 * refused before the first byte is passed on; what arrives is counted too,
 * since a body without Content-Length (chunked, or a connection that never
 * closes) announces nothing. Not CURLOPT_MAXFILESIZE_LARGE: libcurl applies
 * it to every response, so a redirect's or a 404's own page longer than a
 * small target's cap would turn into -EFBIG. Only the final, successful
 * response's body reaches this callback (FAILONERROR, FOLLOWLOCATION).
 */
static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        FetchJob *j = userdata;
        size_t n = size * nmemb;
        int r;

        if (j->cancelled)
                return 0;
        if (!j->range_checked) {
                r = job_check_range(j);
                if (r < 0) {
                        j->error = r;
                        return 0;
                }
        }
        if (!j->length_checked) {
                curl_off_t announced = -1;

                j->length_checked = true;
                if (curl_easy_getinfo(j->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK &&
                    announced >= 0) {
                        if ((uint64_t) announced > j->max_size) {
                                j->error = -EFBIG;
                                return 0;
                        }
                        j->announced = (uint64_t) announced;
                }
        }
        if (n > j->max_size - j->received) {
                j->error = -EFBIG;
                return 0;
        }
        j->received += n;

        if (j->sink) {
                r = j->sink(data, n, j->userdata);
                if (r < 0) {
                        j->error = r;
                        return 0;
                }
        }
        return n;
}

/* Plain http was allowed because the URL names a loopback host: hold every
 * connection to that, whatever DNS or a redirect says. Proxies included. */
static curl_socket_t opensocket_cb(void *userdata, curlsocktype purpose, struct curl_sockaddr *address) {
        FetchJob *j = userdata;
        int fd;

        if (j->loopback_only && !sockaddr_is_loopback(address)) {
                j->error = -EPROTONOSUPPORT;
                return CURL_SOCKET_BAD;
        }
        fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
        if (fd < 0)
                return CURL_SOCKET_BAD;
        return fd;
}

/* ---- one transfer's options ------------------------------------------------- */

/* All options of a transfer, in one place. */
static int job_setup(Fetcher *f, FetchJob *j, const FetchRequest *req, const char *scheme) {
        const FetchOptions *o = &f->options;
        CURL *c = j->curl;
        CURLcode e = CURLE_OK;

#define SET(opt, val)                                          \
        do {                                                   \
                if (e == CURLE_OK)                             \
                        e = curl_easy_setopt(c, (opt), (val)); \
        } while (0)

        SET(CURLOPT_URL, j->url);
        SET(CURLOPT_PRIVATE, j);
        /* Only the URL's own scheme, also for redirects: https never
         * downgrades to http, and nothing else (file, ftp, ...) is spoken. */
        SET(CURLOPT_PROTOCOLS_STR, scheme);
        SET(CURLOPT_REDIR_PROTOCOLS_STR, scheme);
        SET(CURLOPT_FOLLOWLOCATION, 1L);
        SET(CURLOPT_MAXREDIRS, FETCH_MAX_REDIRECTS);
        /* Error bodies are not data: curl fails with the status instead. */
        SET(CURLOPT_FAILONERROR, 1L);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_USERAGENT, o->user_agent);

        if (o->ca_file)
                SET(CURLOPT_CAINFO, o->ca_file);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);

        /* Slow retrieval: a minimum speed over a window, and a deadline. */
        SET(CURLOPT_LOW_SPEED_LIMIT, (long) MIN(o->low_speed_bytes, (uint64_t) LONG_MAX));
        SET(CURLOPT_LOW_SPEED_TIME, (long) o->low_speed_sec);
        SET(CURLOPT_CONNECTTIMEOUT, (long) o->connect_timeout_sec);
        SET(CURLOPT_TIMEOUT, (long) o->total_timeout_sec);
        if (o->max_bytes_per_sec > 0)
                SET(CURLOPT_MAX_RECV_SPEED_LARGE,
                    (curl_off_t) MIN(o->max_bytes_per_sec, (uint64_t) INT64_MAX));

        /* Resume: our own Range header (CURLOPT_RANGE) rather than
         * CURLOPT_RESUME_FROM, so that the answer is judged in one place,
         * job_check_range(). */
        if (j->range)
                SET(CURLOPT_RANGE, j->range);

        if (j->post) {
                /* The body is copied: the caller may free it at once. */
                SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->post_size);
                SET(CURLOPT_COPYPOSTFIELDS, req->post_body);
                /* A moved endpoint still gets the report, not a GET. */
                SET(CURLOPT_POSTREDIR, (long) (CURL_REDIR_POST_301 | CURL_REDIR_POST_302));
        }
        if (j->headers)
                SET(CURLOPT_HTTPHEADER, j->headers);

        SET(CURLOPT_WRITEFUNCTION, write_cb);
        SET(CURLOPT_WRITEDATA, j);
        SET(CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
        SET(CURLOPT_OPENSOCKETDATA, j);
#undef SET

        if (e == CURLE_OUT_OF_MEMORY)
                return -ENOMEM;
        if (e != CURLE_OK)
                return -EOPNOTSUPP; /* a libcurl built without an option we rely on */
        return 0;
}

static int job_add_header(FetchJob *j, const char *line) {
        struct curl_slist *l = curl_slist_append(j->headers, line);

        if (!l)
                return -ENOMEM;
        j->headers = l;
        return 0;
}

/* ---- drivers: libcurl multi on an sd-event loop -------------------------------- */

static void driver_free(Driver *d);

static Driver *driver_ref(Driver *d) {
        d->n_ref++;
        return d;
}

static Driver *driver_unref(Driver *d) {
        if (!d)
                return NULL;
        assert(d->n_ref > 0);
        if (--d->n_ref == 0)
                driver_free(d);
        return NULL;
}

static void job_unlink(FetchJob *j) {
        Driver *d = j->driver;

        if (!d)
                return;
        if (j->added) {
                assert(!d->in_curl);
                (void) curl_multi_remove_handle(d->multi, j->curl);
                j->added = false;
        }
        if (j->prev)
                j->prev->next = j->next;
        else
                d->jobs = j->next;
        if (j->next)
                j->next->prev = j->prev;
        j->prev = j->next = NULL;
        j->driver = NULL;
}

static FetchJob *job_free(FetchJob *j) {
        if (!j)
                return NULL;
        job_unlink(j);
        if (j->curl)
                curl_easy_cleanup(j->curl);
        curl_slist_free_all(j->headers);
        free(j->url);
        free(j->range);
        free(j);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(FetchJob *, job_free);

static void driver_socket_free(DriverSocket *s) {
        Driver *d;

        if (!s)
                return;
        d = s->driver;
        if (s->prev)
                s->prev->next = s->next;
        else
                d->sockets = s->next;
        if (s->next)
                s->next->prev = s->prev;
        sd_event_source_disable_unref(s->source);
        free(s);
}

static void driver_free(Driver *d) {
        assert(!d->jobs);

        if (d->multi) {
                /* Nothing of ours may be called back while libcurl closes
                 * its cached connections: we drop our sources below. */
                (void) curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, NULL);
                (void) curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, NULL);
                (void) curl_multi_cleanup(d->multi);
        }
        while (d->sockets)
                driver_socket_free(d->sockets);
        sd_event_source_disable_unref(d->timer);
        sd_event_unref(d->event);
        free(d);
}

static int job_result(FetchJob *j, CURLcode code, long status) {
        int r;

        if (j->error < 0)
                return j->error; /* our callback's reason beats curl's generic one */
        if (code == CURLE_HTTP_RETURNED_ERROR && status == 416 && j->resume_from > 0)
                return -ERANGE; /* nothing from there on: the server's file is shorter */
        r = curl_code_to_errno(code, status);
        if (r == 0 && (status < 200 || status > 299))
                r = -EIO; /* e.g. a 3xx without Location */
        if (r == 0 && !j->range_checked)
                r = job_check_range(j); /* an empty body never reached write_cb() */
        return r;
}

/* A transfer is over: tell its owner, then forget it. */
static void job_finish(FetchJob *j, CURLcode code) {
        long status = 0;
        int r;

        (void) curl_easy_getinfo(j->curl, CURLINFO_RESPONSE_CODE, &status);
        r = job_result(j, code, status);

        if (r < 0)
                log_debug("%s %s failed: %s (HTTP %ld, %s)", j->post ? "POST" : "GET", j->url,
                          curl_easy_strerror(code), status, strerror(-r));
        else
                log_debug("%s %s: HTTP %ld, %" PRIu64 " bytes", j->post ? "POST" : "GET", j->url, status,
                          j->received);

        /* Out of the multi first: done() may start the next transfer. */
        if (j->added) {
                (void) curl_multi_remove_handle(j->driver->multi, j->curl);
                j->added = false;
        }
        if (!j->cancelled && j->done) {
                j->in_done = true;
                j->done(j, r, status, j->userdata);
                j->in_done = false;
        }
        job_free(j);
}

static void driver_fail_all(Driver *d, int error) {
        while (d->jobs) {
                FetchJob *j = d->jobs;

                if (j->error == 0)
                        j->error = error;
                job_finish(j, CURLE_OK);
        }
}

/* After libcurl returned: hand out finished transfers, drop cancelled ones. */
static void driver_process(Driver *d) {
        CURLMsg *m;
        int left;

        while ((m = curl_multi_info_read(d->multi, &left))) {
                FetchJob *j = NULL;

                if (m->msg != CURLMSG_DONE)
                        continue;
                (void) curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &j);
                assert(j);
                job_finish(j, m->data.result);
        }

        for (FetchJob *j = d->jobs, *next; j; j = next) {
                next = j->next;
                if (j->cancelled)
                        job_free(j);
        }

        if (d->error < 0) {
                int error = d->error;

                d->error = 0;
                driver_fail_all(d, error);
        }
}

static int driver_arm_timer(Driver *d, long timeout_ms);

static void driver_dispatch(Driver *d, curl_socket_t fd, int mask) {
        int running = 0;
        CURLMcode mc;

        driver_ref(d);
        d->in_curl = true;
        mc = curl_multi_socket_action(d->multi, fd, mask, &running);
        d->in_curl = false;
        if (mc == CURLM_OUT_OF_MEMORY)
                d->error = -ENOMEM;
        /* Our timer may have fired a little before libcurl's expiry, which
         * then did not change and was not told again: ask for it. */
        if (running > 0) {
                long timeout_ms = -1;

                if (curl_multi_timeout(d->multi, &timeout_ms) == CURLM_OK) {
                        int r = driver_arm_timer(d, timeout_ms);
                        if (r < 0)
                                d->error = r;
                }
        }
        driver_process(d);
        driver_unref(d);
}

static int driver_on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        DriverSocket *s = userdata;
        int mask = 0;

        if (revents & (EPOLLIN | EPOLLHUP))
                mask |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                mask |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                mask |= CURL_CSELECT_ERR;
        driver_dispatch(s->driver, fd, mask);
        return 0;
}

static int driver_on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        driver_dispatch(userdata, CURL_SOCKET_TIMEOUT, 0);
        return 0;
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what libcurl wants. Called from
 * inside libcurl: only sd-event and curl_multi_assign() here. */
static int curl_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        Driver *d = userp;
        DriverSocket *s = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                driver_socket_free(s);
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;

        if (s) {
                r = sd_event_source_set_io_events(s->source, events);
                if (r >= 0)
                        r = sd_event_source_set_enabled(s->source, SD_EVENT_ON);
                if (r < 0)
                        goto fail;
                return 0;
        }

        s = calloc(1, sizeof(*s));
        if (!s) {
                r = -ENOMEM;
                goto fail;
        }
        s->driver = d;
        s->fd = fd;
        r = sd_event_add_io(d->event, &s->source, fd, events, driver_on_io, s);
        if (r < 0) {
                free(s);
                goto fail;
        }
        (void) sd_event_source_set_description(s->source, "fetch-socket");
        if (curl_multi_assign(d->multi, fd, s) != CURLM_OK) {
                sd_event_source_disable_unref(s->source);
                free(s);
                r = -ENOMEM;
                goto fail;
        }
        s->next = d->sockets;
        if (d->sockets)
                d->sockets->prev = s;
        d->sockets = s;
        return 0;

fail:
        /* Without a watch the transfer would hang until its deadline:
         * every transfer of this driver fails once libcurl returns. */
        d->error = r;
        return -1;
}

/*
 * The driver's one time source, at timeout_ms from now: -1 disarms, 0 means
 * at once. From the real time, rounded up: libcurl calls back only when its
 * next expiry changes, so a timer that fired before that expiry (as one
 * computed from the loop's cached time of the iteration's start would)
 * leaves nobody to wake it again and the transfer stalls.
 */
static int driver_arm_timer(Driver *d, long timeout_ms) {
        struct timespec ts;
        uint64_t when;
        int r;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(d->timer, SD_EVENT_OFF);

        if (timeout_ms == 0)
                when = 1; /* already past: the next iteration */
        else {
                if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
                        return -errno;
                when = (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U +
                       (uint64_t) timeout_ms * 1000U + 999U;
        }
        r = sd_event_source_set_time(d->timer, when);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(d->timer, SD_EVENT_ONESHOT);
}

/* CURLMOPT_TIMERFUNCTION. */
static int curl_on_timer(CURLM *multi, long timeout_ms, void *userp) {
        Driver *d = userp;
        int r;

        r = driver_arm_timer(d, timeout_ms);
        if (r < 0) {
                d->error = r;
                return -1;
        }
        return 0;
}

static int driver_new(Fetcher *f, sd_event *e, Driver **ret) {
        Driver *d;
        int r;

        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->n_ref = 1;
        d->event = sd_event_ref(e);

        r = sd_event_add_time(e, &d->timer, CLOCK_MONOTONIC, 1, FETCH_TIMER_ACCURACY_USEC, driver_on_timer,
                              d);
        if (r >= 0)
                r = sd_event_source_set_enabled(d->timer, SD_EVENT_OFF);
        if (r < 0) {
                driver_free(d);
                return r;
        }
        (void) sd_event_source_set_description(d->timer, "fetch-timer");

        d->multi = curl_multi_init();
        if (!d->multi) {
                driver_free(d);
                return -ENOMEM;
        }
        if (curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, curl_on_socket) != CURLM_OK ||
            curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d) != CURLM_OK ||
            curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, curl_on_timer) != CURLM_OK ||
            curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d) != CURLM_OK) {
                driver_free(d);
                return -EOPNOTSUPP;
        }

        d->next = f->drivers;
        f->drivers = d;
        *ret = d;
        return 0;
}

/* The driver of loop e, made on first use. */
static int fetcher_driver(Fetcher *f, sd_event *e, Driver **ret) {
        for (Driver *d = f->drivers; d; d = d->next)
                if (d->event == e) {
                        *ret = d;
                        return 0;
                }
        return driver_new(f, e, ret);
}

/* ---- the fetcher --------------------------------------------------------------- */

int fetcher_new(const FetchOptions *o, Fetcher **ret) {
        _cleanup_(fetcher_freep) Fetcher *f = NULL;
        int r;

        assert_return(o, -EINVAL);
        assert_return(ret, -EINVAL);

        r = curl_global();
        if (r < 0)
                return r;

        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->options = *o;
        if (o->ca_file) {
                f->ca_file = strdup(o->ca_file);
                if (!f->ca_file)
                        return -ENOMEM;
        }
        f->user_agent = strdup(o->user_agent ?: "oob/" OOB_VERSION);
        if (!f->user_agent)
                return -ENOMEM;
        f->options.ca_file = f->ca_file;
        f->options.user_agent = f->user_agent;

        if (f->options.low_speed_bytes == 0)
                f->options.low_speed_bytes = FETCH_DEFAULT_LOW_SPEED_BYTES;
        if (f->options.low_speed_sec == 0)
                f->options.low_speed_sec = FETCH_DEFAULT_LOW_SPEED_SEC;
        if (f->options.connect_timeout_sec == 0)
                f->options.connect_timeout_sec = FETCH_DEFAULT_CONNECT_TIMEOUT_SEC;
        if (f->options.total_timeout_sec == 0)
                f->options.total_timeout_sec = FETCH_DEFAULT_TOTAL_TIMEOUT_SEC;

        *ret = TAKE_PTR(f);
        return 0;
}

/* Transfers still running are dropped without their done(). From inside a
 * done() the drivers outlive us until the dispatch returns. */
Fetcher *fetcher_free(Fetcher *f) {
        if (!f)
                return NULL;
        while (f->drivers) {
                Driver *d = f->drivers;

                f->drivers = d->next;
                for (FetchJob *j = d->jobs, *next; j; j = next) {
                        next = j->next;
                        if (!j->in_done)
                                job_free(j);
                }
                d->next = NULL;
                driver_unref(d);
        }
        sd_event_unref(f->event);
        sd_event_unref(f->sync_event);
        free(f->ca_file);
        free(f->user_agent);
        free(f);
        return NULL;
}

int fetcher_attach_event(Fetcher *f, sd_event *e) {
        Driver *d;
        int r;

        assert_return(f, -EINVAL);
        assert_return(e, -EINVAL);

        if (f->event == e)
                return 0;
        if (f->event)
                return -EBUSY;
        r = fetcher_driver(f, e, &d);
        if (r < 0)
                return r;
        f->event = sd_event_ref(e);
        return 0;
}

static int fetcher_start_on(Fetcher *f, sd_event *e, const FetchRequest *req, FetchJob **ret) {
        _cleanup_(job_freep) FetchJob *j = NULL;
        FetchJob *started;
        const char *scheme;
        Driver *d;
        int r;

        assert_return(f, -EINVAL);
        assert_return(e, -EINVAL);
        assert_return(req, -EINVAL);
        assert_return(req->url, -EINVAL);
        assert_return(req->post_body || req->post_size == 0, -EINVAL);
        assert_return(!req->post_body || req->resume_from == 0, -EINVAL);
        assert_return(!req->content_type || !strpbrk(req->content_type, "\r\n"), -EINVAL);

        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        j->post = req->post_body;
        j->max_size = req->max_size;
        if (j->post && j->max_size == 0)
                j->max_size = FETCH_DEFAULT_POST_RESPONSE_MAX;
        j->resume_from = req->resume_from;
        j->sink = req->sink;
        j->done = req->done;
        j->userdata = req->userdata;

        r = url_check_policy(f, req->url, &scheme, &j->loopback_only);
        if (r < 0) {
                log_debug("Refusing to fetch %s: %s", req->url,
                          r == -EPROTONOSUPPORT ? "scheme or host not allowed" : "malformed URL");
                return r;
        }
        j->url = strdup(req->url);
        if (!j->url)
                return -ENOMEM;
        if (j->resume_from > 0 && asprintf(&j->range, "%" PRIu64 "-", j->resume_from) < 0) {
                j->range = NULL;
                return -ENOMEM;
        }
        if (j->post) {
                _cleanup_free_ char *type = NULL;

                /* No "100 Continue" round trip for a small report. */
                r = job_add_header(j, "Expect:");
                if (r < 0)
                        return r;
                if (req->content_type) {
                        if (asprintf(&type, "Content-Type: %s", req->content_type) < 0)
                                return -ENOMEM;
                        r = job_add_header(j, type);
                        if (r < 0)
                                return r;
                }
        }

        j->curl = curl_easy_init();
        if (!j->curl)
                return -ENOMEM;
        r = job_setup(f, j, req, scheme);
        if (r < 0)
                return r;

        r = fetcher_driver(f, e, &d);
        if (r < 0)
                return r;
        /* Adding from inside libcurl (a sink) is not allowed. */
        if (d->in_curl)
                return -EBUSY;
        j->driver = d;
        j->next = d->jobs;
        if (d->jobs)
                d->jobs->prev = j;
        d->jobs = j;
        /* libcurl arms the timer at once; the loop starts the transfer. */
        if (curl_multi_add_handle(d->multi, j->curl) != CURLM_OK)
                return -ENOMEM;
        j->added = true;
        if (d->error < 0) {
                /* The timer could not be armed: the transfer would never start. */
                r = d->error;
                d->error = 0;
                return r;
        }

        started = TAKE_PTR(j);
        if (ret)
                *ret = started;
        return 0;
}

int fetcher_start(Fetcher *f, const FetchRequest *req, FetchJob **ret) {
        assert_return(f, -EINVAL);
        assert_return(f->event, -EINVAL); /* fetcher_attach_event() first */

        return fetcher_start_on(f, f->event, req, ret);
}

FetchJob *fetch_job_cancel(FetchJob *j) {
        if (!j || j->in_done || j->cancelled)
                return NULL; /* after done() it is freed anyway */

        j->cancelled = true;
        j->sink = NULL;
        j->done = NULL;
        /* Inside libcurl (a sink cancelling): freed when it returns. */
        if (j->driver && j->driver->in_curl)
                return NULL;
        job_free(j);
        return NULL;
}

void fetch_job_progress(const FetchJob *j, uint64_t *ret_received, uint64_t *ret_total) {
        if (ret_received)
                *ret_received = j ? j->resume_from + j->received : 0;
        if (ret_total)
                *ret_total = j && j->length_checked && j->announced > 0 ? j->resume_from + j->announced : 0;
}

/* ---- synchronous calls: the same transfers, on a private loop ------------------- */

typedef struct SyncCall {
        FetchSink sink;
        void *userdata;
        bool finished;
        int error;
        long status;
} SyncCall;

static int sync_sink(const void *data, size_t size, void *userdata) {
        SyncCall *s = userdata;

        return s->sink ? s->sink(data, size, s->userdata) : 0;
}

static void sync_done(FetchJob *j, int error, long status, void *userdata) {
        SyncCall *s = userdata;

        s->finished = true;
        s->error = error;
        s->status = status;
}

int fetcher_get_stream(Fetcher *f, const char *url, uint64_t max_size, FetchSink sink, void *userdata,
                       long *ret_http) {
        SyncCall s = {.sink = sink, .userdata = userdata};
        FetchJob *j = NULL;
        int r;

        assert_return(f, -EINVAL);
        assert_return(url, -EINVAL);

        if (ret_http)
                *ret_http = 0; /* no response, unless one arrives below */
        /* A sink of ours calling us again: our loop is already running. */
        if (f->sync_busy)
                return -EBUSY;
        if (!f->sync_event) {
                r = sd_event_new(&f->sync_event);
                if (r < 0)
                        return r;
        }

        r = fetcher_start_on(f, f->sync_event,
                             &(const FetchRequest){
                                     .url = url,
                                     .max_size = max_size,
                                     .sink = sync_sink,
                                     .done = sync_done,
                                     .userdata = &s,
                             },
                             &j);
        if (r < 0)
                return r;

        f->sync_busy = true;
        while (!s.finished) {
                r = sd_event_run(f->sync_event, UINT64_MAX);
                if (r < 0) {
                        j = fetch_job_cancel(j);
                        s.error = r;
                        break;
                }
        }
        f->sync_busy = false;

        if (ret_http)
                *ret_http = s.status;
        return s.error;
}

/* ---- into memory ----------------------------------------------------------- */

typedef struct Buffer {
        char *data;
        size_t size, allocated;
        uint64_t max_size;
} Buffer;

static int buffer_sink(const void *data, size_t size, void *userdata) {
        Buffer *b = userdata;

        /* +1 for the terminating NUL; write_cb() already enforces max_size. */
        if (b->allocated - b->size < size + 1) {
                size_t want = MAX(b->allocated, (size_t) FETCH_BUFFER_INITIAL);
                char *p;

                while (want - b->size < size + 1) {
                        if (want > SIZE_MAX / 2)
                                return -ENOMEM;
                        want *= 2;
                }
                if (b->max_size < SIZE_MAX - 1)
                        want = MIN(want, MAX((size_t) b->max_size + 1, b->size + size + 1));
                p = realloc(b->data, want);
                if (!p)
                        return -ENOMEM;
                b->data = p;
                b->allocated = want;
        }
        memcpy(b->data + b->size, data, size);
        b->size += size;
        return 0;
}

int fetcher_get(Fetcher *f, const char *url, uint64_t max_size, char **ret, size_t *ret_size) {
        _cleanup_free_ char *data = NULL;
        Buffer b = {.max_size = max_size};
        int r;

        assert_return(f, -EINVAL);
        assert_return(url, -EINVAL);
        assert_return(ret, -EINVAL);

        r = fetcher_get_stream(f, url, max_size, buffer_sink, &b, NULL);
        data = b.data;
        if (r < 0)
                return r;
        if (!data) {
                data = malloc(1);
                if (!data)
                        return -ENOMEM;
        }
        data[b.size] = 0;

        if (ret_size)
                *ret_size = b.size;
        *ret = TAKE_PTR(data);
        return 0;
}
