/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The HTTP fetcher: the only file that includes curl.h. CURLcode and HTTP
 * statuses are translated into our errno vocabulary here, once.
 *
 * Everything fetched is untrusted until TUF verified it, so the fetcher's job
 * is to bound what an attacker on the path or a compromised mirror can make
 * us do: a size cap (endless data), a minimum speed and a deadline (slow
 * retrieval), no scheme downgrade on redirect, and no plain http except to
 * loopback. All transfer options are set in fetch_setup(), so the daemon can
 * run the same configured handles under curl multi later.
 */

#include <arpa/inet.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <strings.h>

#include "updater.h"

#define FETCH_MAX_REDIRECTS 5L
#define FETCH_DEFAULT_LOW_SPEED_BYTES 1024U
#define FETCH_DEFAULT_LOW_SPEED_SEC 30U
#define FETCH_DEFAULT_CONNECT_TIMEOUT_SEC 30U
#define FETCH_DEFAULT_TOTAL_TIMEOUT_SEC 3600U
/* Initial buffer for fetcher_get(); it grows by doubling up to the cap. */
#define FETCH_BUFFER_INITIAL 16384U

struct Fetcher {
        FetchOptions options; /* ca_file and user_agent point to our copies */
        char *ca_file;
        char *user_agent;
        /* Kept between fetches (reset each time) so that connections to the
         * same mirror are reused: curl_easy_reset() keeps the connection cache. */
        CURL *curl;
};

/* One transfer's state, shared with the callbacks. */
typedef struct FetchState {
        CURL *curl;
        uint64_t max_size;
        uint64_t received;
        FetchSink sink;
        void *userdata;
        bool loopback_only;  /* plain http: only connect to loopback addresses */
        bool length_checked; /* the announced Content-Length was compared */
        int error;           /* set by a callback that aborted the transfer */
} FetchState;

static int curl_global(void) {
        static bool done = false;

        if (done)
                return 0;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -ENOMEM;
        done = true;
        return 0;
}

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

        f->curl = curl_easy_init();
        if (!f->curl)
                return -ENOMEM;

        *ret = TAKE_PTR(f);
        return 0;
}

Fetcher *fetcher_free(Fetcher *f) {
        if (!f)
                return NULL;
        if (f->curl)
                curl_easy_cleanup(f->curl);
        free(f->ca_file);
        free(f->user_agent);
        free(f);
        return NULL;
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

/* ---- callbacks ---------------------------------------------------------- */

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
        FetchState *s = userdata;
        size_t n = size * nmemb;
        int r;

        if (!s->length_checked) {
                curl_off_t announced = -1;

                s->length_checked = true;
                if (curl_easy_getinfo(s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK &&
                    announced >= 0 && (uint64_t) announced > s->max_size) {
                        s->error = -EFBIG;
                        return 0;
                }
        }
        if (n > s->max_size - s->received) {
                s->error = -EFBIG;
                return 0;
        }
        s->received += n;

        if (s->sink) {
                r = s->sink(data, n, s->userdata);
                if (r < 0) {
                        s->error = r;
                        return 0;
                }
        }
        return n;
}

/* Plain http was allowed because the URL names a loopback host: hold every
 * connection to that, whatever DNS or a redirect says. Proxies included. */
static curl_socket_t opensocket_cb(void *userdata, curlsocktype purpose, struct curl_sockaddr *address) {
        FetchState *s = userdata;
        int fd;

        if (s->loopback_only && !sockaddr_is_loopback(address)) {
                s->error = -EPROTONOSUPPORT;
                return CURL_SOCKET_BAD;
        }
        fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
        if (fd < 0)
                return CURL_SOCKET_BAD;
        return fd;
}

/* ---- one transfer -------------------------------------------------------- */

/* All options of a transfer, in one place. */
static int fetch_setup(Fetcher *f, CURL *c, const char *url, const char *scheme, FetchState *s) {
        const FetchOptions *o = &f->options;
        CURLcode e = CURLE_OK;

#define SET(opt, val)                                          \
        do {                                                   \
                if (e == CURLE_OK)                             \
                        e = curl_easy_setopt(c, (opt), (val)); \
        } while (0)

        SET(CURLOPT_URL, url);
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

        SET(CURLOPT_WRITEFUNCTION, write_cb);
        SET(CURLOPT_WRITEDATA, s);
        SET(CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
        SET(CURLOPT_OPENSOCKETDATA, s);
#undef SET

        if (e == CURLE_OUT_OF_MEMORY)
                return -ENOMEM;
        if (e != CURLE_OK)
                return -EOPNOTSUPP; /* a libcurl built without an option we rely on */
        return 0;
}

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

int fetcher_get_stream(Fetcher *f, const char *url, uint64_t max_size, FetchSink sink, void *userdata,
                       long *ret_http) {
        FetchState s = {
                .curl = f->curl,
                .max_size = max_size,
                .sink = sink,
                .userdata = userdata,
        };
        const char *scheme;
        long status = 0;
        CURLcode e;
        int r;

        assert_return(f, -EINVAL);
        assert_return(url, -EINVAL);

        if (ret_http)
                *ret_http = 0; /* no response, unless one arrives below */

        r = url_check_policy(f, url, &scheme, &s.loopback_only);
        if (r < 0) {
                log_debug("Refusing to fetch %s: %s", url,
                          r == -EPROTONOSUPPORT ? "scheme or host not allowed" : "malformed URL");
                return r;
        }

        curl_easy_reset(f->curl);
        r = fetch_setup(f, f->curl, url, scheme, &s);
        if (r < 0)
                return r;

        e = curl_easy_perform(f->curl);
        (void) curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &status);

        if (s.error < 0)
                r = s.error; /* our callback's reason beats curl's generic one */
        else
                r = curl_code_to_errno(e, status);
        if (r == 0 && (status < 200 || status > 299))
                r = -EIO; /* e.g. a 3xx without Location */

        if (r < 0)
                log_debug("GET %s failed: %s (HTTP %ld, %s)", url, curl_easy_strerror(e), status,
                          strerror(-r));
        else
                log_debug("GET %s: HTTP %ld, %" PRIu64 " bytes", url, status, s.received);

        if (ret_http)
                *ret_http = status;
        return r;
}

/* ---- into memory ----------------------------------------------------------- */

typedef struct Buffer {
        char *data;
        size_t size, allocated;
        uint64_t max_size;
} Buffer;

static int buffer_sink(const void *data, size_t size, void *userdata) {
        Buffer *b = userdata;

        /* +1 for the terminating NUL; fetcher_get_stream() already enforces max_size. */
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
