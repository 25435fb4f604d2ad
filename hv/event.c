/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt's event implementation on sd-event.
 *
 * The libvirt client library needs an event loop for everything that arrives
 * unasked: domain events, keepalive, a closed connection. Instead of running
 * libvirt's own loop in a second thread, its six hooks are mapped onto the
 * daemon's sd-event loop:
 *
 *   handle (fd watch)  -> an sd-event io source. libvirt may watch one fd
 *                         twice with disjoint event sets; epoll refuses a
 *                         second registration of the same fd, so the second
 *                         watch gets a dup() of it (epoll keys on the open
 *                         file and the fd number, and a dup is a new number).
 *                         Events 0 disables the source: epoll reports
 *                         errors and hang-ups even when nothing is asked for.
 *   timeout            -> an sd-event CLOCK_MONOTONIC timer. libvirt's
 *                         timeouts are periodic, in milliseconds: -1 is
 *                         disabled, 0 fires on every loop iteration (libvirt
 *                         uses it to dispatch queued events "now"), N fires
 *                         every N ms until updated or removed. The timer is
 *                         re-armed before its callback runs, so the callback
 *                         may update or remove it. Accuracy 1 us: sd-event's
 *                         default of 250 ms would delay every queued domain
 *                         event (a crash must be seen within a second).
 *   remove             -> the source is disabled and dropped at once (no
 *                         callback after remove returned), but the free
 *                         callback for libvirt's opaque data runs later from
 *                         a defer source: libvirt documents that calling it
 *                         from inside remove may deadlock.
 *
 * libvirt calls these hooks from whichever thread uses a connection; oobd has
 * one thread, so no locking here.
 */

#include <fcntl.h>
#include <sys/epoll.h>

#include <libvirt/libvirt.h>
#include <systemd/sd-event.h>

#include "hv-internal.h"

typedef struct EventWatch EventWatch;
struct EventWatch {
        int id;
        bool timer;      /* a timeout, else an fd watch */
        int fd;          /* libvirt's fd (watches) */
        int own_fd;      /* our dup of it, or -EBADF */
        int events;      /* VIR_EVENT_HANDLE_* (watches) */
        int interval_ms; /* -1, 0 or N (timeouts) */
        virEventHandleCallback handle_cb;
        virEventTimeoutCallback timeout_cb;
        void *opaque;
        virFreeCallback ff;
        sd_event_source *source;
        EventWatch *next;
};

typedef struct PendingFree {
        virFreeCallback ff;
        void *opaque;
} PendingFree;

static sd_event *event_loop;
static EventWatch *watches;
static int last_id;

sd_event *desktop_event_loop(void) {
        return event_loop;
}

static EventWatch *watch_find(int id, bool timer) {
        for (EventWatch *w = watches; w; w = w->next)
                if (w->id == id && w->timer == timer)
                        return w;
        return NULL;
}

static int next_id(void) {
        /* Ids are positive and never reused within any realistic lifetime. */
        if (last_id == INT_MAX)
                last_id = 0;
        return ++last_id;
}

static uint32_t events_to_epoll(int events) {
        uint32_t e = 0;

        if (events & VIR_EVENT_HANDLE_READABLE)
                e |= EPOLLIN;
        if (events & VIR_EVENT_HANDLE_WRITABLE)
                e |= EPOLLOUT;
        /* EPOLLERR and EPOLLHUP are always reported. */
        return e;
}

static int events_from_epoll(uint32_t e) {
        int events = 0;

        if (e & (EPOLLIN | EPOLLPRI))
                events |= VIR_EVENT_HANDLE_READABLE;
        if (e & EPOLLOUT)
                events |= VIR_EVENT_HANDLE_WRITABLE;
        if (e & EPOLLERR)
                events |= VIR_EVENT_HANDLE_ERROR;
        if (e & (EPOLLHUP | EPOLLRDHUP))
                events |= VIR_EVENT_HANDLE_HANGUP;
        return events;
}

static int on_pending_free(sd_event_source *s, void *userdata) {
        PendingFree *p = userdata;

        p->ff(p->opaque);
        free(p);
        sd_event_source_unref(s);
        return 0;
}

/* Drop a watch or timeout: no callback after this, its free callback later. */
static void watch_release(EventWatch *w) {
        w->source = sd_event_source_disable_unref(w->source);
        if (w->own_fd >= 0)
                close(w->own_fd);
        if (w->ff) {
                PendingFree *p = malloc(sizeof(*p));
                sd_event_source *s = NULL;
                int r = -ENOMEM;

                if (p) {
                        *p = (PendingFree){.ff = w->ff, .opaque = w->opaque};
                        r = sd_event_add_defer(event_loop, &s, on_pending_free, p);
                }
                if (r < 0) {
                        /* Calling ff here could deadlock libvirt: leak instead. */
                        log_debug_errno(r, "libvirt event: cannot defer freeing watch %d, leaking it: %m",
                                        w->id);
                        free(p);
                }
        }
        free(w);
}

static void watch_unlink(EventWatch *w) {
        for (EventWatch **p = &watches; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        return;
                }
}

/* ---- fd watches ---------------------------------------------------------- */

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        EventWatch *w = userdata;
        int events =
                events_from_epoll(revents) & (w->events | VIR_EVENT_HANDLE_ERROR | VIR_EVENT_HANDLE_HANGUP);

        /* w may be removed by the callback: nothing touches it afterwards. */
        if (events != 0)
                w->handle_cb(w->id, w->fd, events, w->opaque);
        return 0;
}

static int watch_apply_events(EventWatch *w) {
        int r;

        if (w->events == 0)
                return sd_event_source_set_enabled(w->source, SD_EVENT_OFF);
        r = sd_event_source_set_io_events(w->source, events_to_epoll(w->events));
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(w->source, SD_EVENT_ON);
}

static int add_handle(int fd, int events, virEventHandleCallback cb, void *opaque, virFreeCallback ff) {
        _cleanup_free_ EventWatch *w = NULL;
        int r;

        if (!event_loop || fd < 0 || !cb)
                return -1;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -1;
        *w = (EventWatch){
                .fd = fd, .own_fd = -EBADF, .events = events, .handle_cb = cb, .opaque = opaque, .ff = ff};

        r = sd_event_add_io(event_loop, &w->source, fd, events_to_epoll(events), on_io, w);
        if (r == -EEXIST) {
                /* Already watched for the other direction: watch a dup. */
                w->own_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (w->own_fd < 0)
                        return -1;
                r = sd_event_add_io(event_loop, &w->source, w->own_fd, events_to_epoll(events), on_io, w);
        }
        if (r < 0) {
                log_debug_errno(r, "libvirt event: cannot watch fd %d: %m", fd);
                if (w->own_fd >= 0)
                        close(w->own_fd);
                return -1;
        }
        (void) sd_event_source_set_description(w->source, "libvirt-handle");
        r = watch_apply_events(w);
        if (r < 0) {
                w->source = sd_event_source_disable_unref(w->source);
                if (w->own_fd >= 0)
                        close(w->own_fd);
                return -1;
        }
        w->id = next_id();
        w->next = watches;
        watches = w;
        return TAKE_PTR(w)->id;
}

static void update_handle(int id, int events) {
        EventWatch *w = watch_find(id, false);
        int r;

        if (!w)
                return;
        w->events = events;
        r = watch_apply_events(w);
        if (r < 0)
                log_debug_errno(r, "libvirt event: cannot update watch %d: %m", id);
}

static int remove_handle(int id) {
        EventWatch *w = watch_find(id, false);

        if (!w)
                return -1;
        watch_unlink(w);
        watch_release(w);
        return 0;
}

/* ---- timeouts ------------------------------------------------------------ */

static int timeout_arm(EventWatch *w) {
        int r;

        if (w->interval_ms < 0)
                return sd_event_source_set_enabled(w->source, SD_EVENT_OFF);
        r = sd_event_source_set_time_relative(w->source, (uint64_t) w->interval_ms * 1000U);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(w->source, SD_EVENT_ONESHOT);
}

static int on_time(sd_event_source *s, uint64_t usec, void *userdata) {
        EventWatch *w = userdata;
        int r;

        /* Periodic until told otherwise; the callback may change or remove it. */
        r = timeout_arm(w);
        if (r < 0)
                log_debug_errno(r, "libvirt event: cannot re-arm timeout %d: %m", w->id);
        w->timeout_cb(w->id, w->opaque);
        return 0;
}

static int add_timeout(int interval_ms, virEventTimeoutCallback cb, void *opaque, virFreeCallback ff) {
        _cleanup_free_ EventWatch *w = NULL;
        int r;

        if (!event_loop || !cb)
                return -1;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -1;
        *w = (EventWatch){.timer = true,
                          .fd = -EBADF,
                          .own_fd = -EBADF,
                          .interval_ms = interval_ms,
                          .timeout_cb = cb,
                          .opaque = opaque,
                          .ff = ff};
        r = sd_event_add_time_relative(event_loop, &w->source, CLOCK_MONOTONIC, 0, 1, on_time, w);
        if (r >= 0) {
                (void) sd_event_source_set_description(w->source, "libvirt-timeout");
                r = timeout_arm(w);
        }
        if (r < 0) {
                log_debug_errno(r, "libvirt event: cannot add a timeout: %m");
                w->source = sd_event_source_disable_unref(w->source);
                return -1;
        }
        w->id = next_id();
        w->next = watches;
        watches = w;
        return TAKE_PTR(w)->id;
}

static void update_timeout(int id, int interval_ms) {
        EventWatch *w = watch_find(id, true);
        int r;

        if (!w)
                return;
        w->interval_ms = interval_ms;
        r = timeout_arm(w);
        if (r < 0)
                log_debug_errno(r, "libvirt event: cannot update timeout %d: %m", id);
}

static int remove_timeout(int id) {
        EventWatch *w = watch_find(id, true);

        if (!w)
                return -1;
        watch_unlink(w);
        watch_release(w);
        return 0;
}

int desktop_event_loop_setup(sd_event *e) {
        int r;

        assert_return(e, -EINVAL);

        if (event_loop)
                /* Once per process: libvirt cannot move its watches elsewhere. */
                return event_loop == e ? 0 : -EBUSY;

        r = libvirt_init();
        if (r < 0)
                return r;
        event_loop = sd_event_ref(e);
        virEventRegisterImpl(add_handle, update_handle, remove_handle, add_timeout, update_timeout,
                             remove_timeout);
        return 0;
}
