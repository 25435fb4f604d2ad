/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer entry point for the helpdesk order parser: the production
 * function on arbitrary bytes, with the same consistency checks as
 * fuzz-patch-manifest.c.
 */
#include "manifests.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(order_freep) Order *o = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        r = order_parse(data, size, &o, &error);
        if (r < 0) {
                if (o || (r != -ENOMEM && (!error || !strneq(error, "line ", 5))))
                        abort();
                return 0;
        }
        if (!o || error || !o->device || !o->reason || o->sequence == 0 || !order_action_to_string(o->action))
                abort();
        return 0;
}
