/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Logging: to the journal when our stderr is the journal's stream (systemd
 * sets JOURNAL_STREAM for services), plain lines on stderr otherwise. Only
 * this file includes sd-journal.
 */

#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

#include "lib.h"

static int max_level = LOG_LEVEL_INFO;
static const char *program = "oob";
static int use_journal = -1;

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_program(const char *name) {
        program = name;
}

int log_level_from_string(const char *s) {
        static const char *const names[] = {
                "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
        };
        uint64_t n;

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (streq(s, names[i]))
                        return (int) i;
        if (safe_atou64(s, &n) >= 0 && n <= LOG_LEVEL_DEBUG)
                return (int) n;
        return -EINVAL;
}

/* JOURNAL_STREAM is "DEV:INO" of the stream; it is ours only if stderr matches. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == (dev_t) dev && st.st_ino == (ino_t) ino;
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *message_id, const char *format, ...) {
        char buf[2048];
        int saved_errno = errno;
        va_list ap;

        if (error < 0)
                error = -error;
        if (level > max_level)
                return -error;

        errno = error;
        va_start(ap, format);
        vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        if (use_journal < 0)
                use_journal = stderr_is_journal();

        if (use_journal) {
                char lbuf[32];
                snprintf(lbuf, sizeof(lbuf), "CODE_LINE=%d", line);
                if (message_id)
                        sd_journal_send_with_location("CODE_FILE=", file, lbuf, func,
                                                      "MESSAGE=%s", buf,
                                                      "PRIORITY=%d", level,
                                                      "MESSAGE_ID=%s", message_id,
                                                      "SYSLOG_IDENTIFIER=%s", program,
                                                      error ? "ERRNO=%d" : NULL, error,
                                                      NULL);
                else
                        sd_journal_send_with_location("CODE_FILE=", file, lbuf, func,
                                                      "MESSAGE=%s", buf,
                                                      "PRIORITY=%d", level,
                                                      "SYSLOG_IDENTIFIER=%s", program,
                                                      error ? "ERRNO=%d" : NULL, error,
                                                      NULL);
        } else
                fprintf(stderr, "%s: %s\n", program, buf);

        errno = saved_errno;
        return -error;
}
