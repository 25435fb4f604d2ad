/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * oobctl's verbs. Each verb gets argv starting at its own name, parses its
 * options itself, logs its one error message and returns an exit status.
 */

#include "lib.h"

/* Exit statuses, as the usage text documents them. */
#define OOBCTL_EXIT_OK 0
#define OOBCTL_EXIT_FAILURE 1
#define OOBCTL_EXIT_USAGE 2

/* A readable cause for one of our errno codes ("rollback attempt", ...),
 * or strerror()'s text for the others. */
const char *oobctl_error_cause(int error);

int verb_tuf(int argc, char *argv[]);
int verb_snapshot(int argc, char *argv[]);
int verb_image(int argc, char *argv[]);
int verb_apply(int argc, char *argv[]);
int verb_desktop(int argc, char *argv[]);   /* desktop.c: the domain, trials, the guard */

/* (image.c) The Windows volume of d, as disk_find_windows(); on -ENOENT
 * *ret_bitlocker says whether a BitLocker partition (then in *ret) is the
 * likely reason. */
typedef struct OfflineDisk OfflineDisk;
typedef struct Partition Partition;
int image_find_windows(OfflineDisk *d, Partition *ret, bool *ret_bitlocker);

/* ---- the D-Bus verbs (status.c, update.c, history.c) ----------------------------- */

/* Exit statuses of the verbs that talk to oobd, beyond the three above. */
#define OOBCTL_EXIT_UNREACHABLE 3      /* oobd is not running, or the bus is not reachable */
#define OOBCTL_EXIT_ROLLED_BACK 4      /* the update was applied, failed its trial and was rolled back */
#define OOBCTL_EXIT_NOTHING_TO_DO 5    /* up to date: nothing to apply */
#define OOBCTL_EXIT_NOT_DONE 6         /* cancelled, or deferred (the user was active): later */

int verb_status(int argc, char *argv[]);
int verb_update(int argc, char *argv[]);
int verb_history(int argc, char *argv[]);

/* (status.c) Shared by those verbs; each returns an exit status and has
 * logged its one message when that is not OOBCTL_EXIT_OK. */
#include <jansson.h>
#include <systemd/sd-bus.h>
/* address NULL: the system bus ($DBUS_SYSTEM_BUS_ADDRESS is honoured). */
int oobctl_bus_connect(const char *address, sd_bus **ret);
/* A failed call: "Cannot WHAT: ..."; OOBCTL_EXIT_UNREACHABLE when oobd is not there. */
int oobctl_bus_failure(const char *what, const sd_bus_error *e, int r);
/* Call an org.oob.Manager1 method without arguments that answers one JSON string. */
int oobctl_bus_call_json(sd_bus *bus, const char *method, const char *what, json_t **ret);
int oobctl_print_json(const json_t *j);
const char *oobctl_json_str(const json_t *o, const char *key, const char *def);
/* Local time "YYYY-MM-DD HH:MM:SS", "-" for 0. */
void oobctl_format_time(int64_t t, char *buf, size_t size);
