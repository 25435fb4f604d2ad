/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ISO 8601 UTC timestamps as TUF writes them ("2030-01-01T00:00:00Z").
 * Only this one form is accepted: no offsets, no fractions, so that two
 * clients never disagree about whether metadata has expired.
 */

#include <time.h>

#include "manifests.h"

int parse_iso8601_utc(const char *s, int64_t *ret) {
        struct tm tm = {};
        const char *end;
        time_t t;

        assert_return(s && ret, -EINVAL);
        if (strlen(s) != 20)
                return -EPROTO;
        end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (!end || *end)
                return -EPROTO;
        if (tm.tm_sec > 59)  /* strptime allows leap seconds; TUF does not use them */
                return -EPROTO;
        /* timegm() normalizes "02-30" into March, in place: keep what was
         * written and refuse dates that moved. */
        struct tm written = tm, check;
        t = timegm(&tm);
        if (t == (time_t) -1)
                return -EPROTO;
        if (!gmtime_r(&t, &check) || check.tm_year != written.tm_year || check.tm_mon != written.tm_mon ||
            check.tm_mday != written.tm_mday || check.tm_hour != written.tm_hour)
                return -EPROTO;
        *ret = (int64_t) t;
        return 0;
}

int format_iso8601_utc(int64_t t, char buf[static 21]) {
        struct tm tm;
        time_t tt = (time_t) t;

        if (!gmtime_r(&tt, &tm))
                return -ERANGE;
        if (strftime(buf, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) != 20)
                return -ERANGE;
        return 0;
}
