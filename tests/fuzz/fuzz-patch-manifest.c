/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer entry point for the patch-manifest parser: the production
 * function on arbitrary bytes. Any crash, leak or sanitizer report is a bug;
 * the result must also be consistent (an error always has a message that
 * names a position, a success none).
 */
#include "manifests.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(patch_manifest_freep) PatchManifest *m = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        r = patch_manifest_parse(data, size, &m, &error);
        if (r < 0) {
                if (m || (r != -ENOMEM && (!error || !strneq(error, "line ", 5))))
                        abort();
                return 0;
        }
        if (!m || error || !m->id || m->n_actions == 0 || !m->payloads)
                abort();
        for (size_t i = 0; i < m->n_actions; i++)
                if (!patch_action_type_to_string(m->actions[i].type))
                        abort();
        return 0;
}
