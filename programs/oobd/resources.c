/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the manager makes on first use: the fetcher (libcurl and its TLS
 * library), the report outbox, the libvirt connection to the desktop, and
 * the guard that watches the desktop between patch windows.
 *
 * Why lazily: an idle oobd should cost next to nothing in the management
 * VM. libcurl with OpenSSL's CA store and a libvirt connection are each
 * megabytes; they are set up when a job, a waiting report or the guard
 * needs them, not at start.
 *
 * The guard is the exception that proves it: watching the desktop for
 * crash loops is oobd's job all day, so with [guard] max-crashes > 0 the
 * desktop connection is made right after start-up. A failed connection
 * (libvirtd not up yet, domain not defined) is retried every minute, and
 * only then is there a timer on the idle loop.
 */

#include <dirent.h>

#include "oobd.h"
#include "recovery.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define GUARD_RETRY_USEC (60 * USEC_PER_SEC)

int manager_get_fetcher(Manager *m, Fetcher **ret) {
        _cleanup_(fetcher_freep) Fetcher *f = NULL;
        FetchOptions o;
        int r;

        assert_return(m && ret, -EINVAL);

        if (!m->fetcher) {
                oobd_config_fetch_options(&m->config, &o);
                r = fetcher_new(&o, &f);
                if (r < 0)
                        return r;
                r = fetcher_attach_event(f, m->event);
                if (r < 0)
                        return r;
                m->fetcher = TAKE_PTR(f);
        }
        *ret = m->fetcher;
        return 0;
}

int manager_get_outbox(Manager *m, Outbox **ret) {
        _cleanup_(outbox_freep) Outbox *o = NULL;
        Fetcher *f;
        int r;

        assert_return(m && ret, -EINVAL);

        if (!m->outbox) {
                if (!m->config.reports_url)
                        return -ENOENT;
                r = manager_get_fetcher(m, &f);
                if (r < 0)
                        return r;
                r = outbox_new(m->event, f, m->config.outbox_dir, m->config.reports_url, &o);
                if (r < 0)
                        return r;
                r = outbox_resume(o);
                if (r < 0)
                        return r;
                m->outbox = TAKE_PTR(o);
        }
        *ret = m->outbox;
        return 0;
}

int manager_resume_reports(Manager *m) {
        Outbox *o;
        int r;

        assert_return(m, -EINVAL);

        if (!m->config.reports_url || m->outbox || manager_pending_reports(m) == 0)
                return 0;
        r = manager_get_outbox(m, &o);
        if (r < 0)
                return log_warning_errno(r, "Failed to resume sending the reports in %s: %m",
                                         m->config.outbox_dir);
        log_info("Sending %u report%s left in %s.", manager_pending_reports(m),
                 manager_pending_reports(m) == 1 ? "" : "s", m->config.outbox_dir);
        return 0;
}

/* Every desktop event: the running job's (its trial decides), else the guard's. */
static void on_desktop_event(Desktop *d, const DesktopEvent *ev, void *userdata) {
        Manager *m = userdata;

        log_debug("Desktop %s: %s", desktop_name(d), desktop_event_type_to_string(ev->type));
        if (m->job && !m->job->finished && m->job->kind != JOB_CHECK) {
                if (m->driver->desktop_event)
                        m->driver->desktop_event(m->job, ev);
                return;
        }
        if (m->guard)
                guard_feed(m->guard, ev);
}

int manager_get_desktop(Manager *m, Desktop **ret) {
        DesktopOptions o;
        int r;

        assert_return(m && ret, -EINVAL);

        if (!m->desktop) {
                if (!m->desktop_loop_set_up) {
                        /* Once per process: libvirt's event implementation on our loop. */
                        r = desktop_event_loop_setup(m->event);
                        if (r < 0)
                                return r;
                        m->desktop_loop_set_up = true;
                }
                o = (DesktopOptions){.uri = m->config.desktop_uri, .name = m->config.desktop_name};
                r = desktop_open(&o, on_desktop_event, m, &m->desktop);
                if (r < 0)
                        return r;
        }
        *ret = m->desktop;
        return 0;
}

static int on_guard_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        m->guard_retry = sd_event_source_disable_unref(m->guard_retry);
        (void) manager_start_guard(m);
        return 0;
}

int manager_start_guard(Manager *m) {
        GuardOptions o;
        Desktop *d;
        uint64_t now;
        int r;

        assert_return(m, -EINVAL);

        if (m->guard || m->config.guard_max_crashes == 0)
                return 0;

        r = manager_get_desktop(m, &d);
        if (r >= 0) {
                o = (GuardOptions){
                        .state_dir = m->config.state_dir,
                        .catalog_dir = m->config.catalog_dir,
                        .max_crashes = m->config.guard_max_crashes,
                        .window_sec = m->config.guard_window,
                };
                r = guard_new(m->event, d, &o, &m->guard);
                if (r >= 0) {
                        log_info("Guarding desktop %s: %u crashes within %us revert it to the last "
                                 "known-good "
                                 "snapshot.",
                                 m->config.desktop_name, m->config.guard_max_crashes,
                                 m->config.guard_window);
                        return 0;
                }
        }

        if (!m->guard_retry_logged)
                log_warning_errno(r, "Cannot guard desktop %s on %s yet (%m); retrying every minute.",
                                  m->config.desktop_name, m->config.desktop_uri);
        m->guard_retry_logged = true;
        if (sd_event_now(m->event, CLOCK_MONOTONIC, &now) >= 0 &&
            sd_event_add_time(m->event, &m->guard_retry, CLOCK_MONOTONIC, now + GUARD_RETRY_USEC,
                              USEC_PER_SEC, on_guard_retry, m) >= 0)
                return r;
        return log_error_errno(r, "Failed to schedule guarding the desktop again; it is not guarded: %m");
}

void manager_release_resources(Manager *m) {
        if (!m)
                return;
        m->guard_retry = sd_event_source_disable_unref(m->guard_retry);
        m->guard_retry_logged = false;
        m->guard = guard_free(m->guard);
        m->desktop = desktop_close(m->desktop);
        /* the outbox before the fetcher its transfers run on */
        m->outbox = outbox_free(m->outbox);
        m->fetcher = fetcher_free(m->fetcher);
}
