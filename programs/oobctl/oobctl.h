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

/* (image.c) The Windows volume of d, as disk_find_windows(); on -ENOENT
 * *ret_bitlocker says whether a BitLocker partition (then in *ret) is the
 * likely reason. */
typedef struct OfflineDisk OfflineDisk;
typedef struct Partition Partition;
int image_find_windows(OfflineDisk *d, Partition *ret, bool *ret_bitlocker);
