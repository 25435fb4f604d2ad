/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oobd's configuration: the keys, their defaults and the checks that need
 * more than one key. The grammar and the value parsers are lib/config.c's.
 * mgmt-vm-rootfs/oobd.conf documents every key; tests compare it with
 * `oobd --dump-config`, so a key added here without its documentation
 * fails the tests.
 */

#include <stddef.h>
#include <systemd/sd-id128.h>

#include "oobd.h"

/* The app ID that turns /etc/machine-id into oob's device ID: the machine ID
 * itself must not leave the machine (machine-id(5)). */
#define OOB_DEVICE_APP_ID SD_ID128_MAKE(5c, 1e, 3a, 77, 0b, 94, 4d, 2f, 86, 1a, c0, 3e, 9d, 52, 6b, 18)

#define DEVICE_ID_MAX 64

static const ConfigItem config_items[] = {
        {"repository", "metadata-url", config_parse_string, offsetof(OobdConfig, metadata_url)},
        {"repository", "targets-url", config_parse_string, offsetof(OobdConfig, targets_url)},
        {"repository", "ca-file", config_parse_path, offsetof(OobdConfig, ca_file)},
        {"repository", "allow-http", config_parse_bool, offsetof(OobdConfig, allow_http)},
        {"device", "id", config_parse_string, offsetof(OobdConfig, device_id)},
        {"device", "groups", config_parse_strv, offsetof(OobdConfig, groups)},
        {"paths", "state-dir", config_parse_path, offsetof(OobdConfig, state_dir)},
        {"paths", "metadata-dir", config_parse_path, offsetof(OobdConfig, metadata_dir)},
        {"paths", "payload-dir", config_parse_path, offsetof(OobdConfig, payload_dir)},
        {"paths", "catalog-dir", config_parse_path, offsetof(OobdConfig, catalog_dir)},
        {"paths", "outbox-dir", config_parse_path, offsetof(OobdConfig, outbox_dir)},
        {"desktop", "uri", config_parse_string, offsetof(OobdConfig, desktop_uri)},
        {"desktop", "name", config_parse_string, offsetof(OobdConfig, desktop_name)},
        {"desktop", "shutdown-agent-timeout", config_parse_seconds,
         offsetof(OobdConfig, shutdown_agent_timeout)},
        {"desktop", "shutdown-acpi-timeout", config_parse_seconds,
         offsetof(OobdConfig, shutdown_acpi_timeout)},
        {"desktop", "defer-when-user-active", config_parse_bool,
         offsetof(OobdConfig, defer_when_user_active)},
        {"window", "bandwidth-limit", config_parse_bytes, offsetof(OobdConfig, bandwidth_limit)},
        {"window", "max-download-time", config_parse_seconds, offsetof(OobdConfig, max_download_time)},
        {"window", "trial-boot-timeout", config_parse_seconds, offsetof(OobdConfig, trial_boot_timeout)},
        {"window", "trial-stability", config_parse_seconds, offsetof(OobdConfig, trial_stability)},
        {"reports", "url", config_parse_string, offsetof(OobdConfig, reports_url)},
        {"guard", "max-crashes", config_parse_unsigned, offsetof(OobdConfig, guard_max_crashes)},
        {"guard", "window", config_parse_seconds, offsetof(OobdConfig, guard_window)},
        {"retention", "keep-snapshots", config_parse_unsigned, offsetof(OobdConfig, keep_snapshots)},
};

static void config_defaults(OobdConfig *c) {
        *c = (OobdConfig){
                .shutdown_agent_timeout = 3 * 60,
                .shutdown_acpi_timeout = 2 * 60,
                .defer_when_user_active = true,
                .bandwidth_limit = 0,
                .max_download_time = 60 * 60,
                .trial_boot_timeout = 10 * 60,
                .trial_stability = 5 * 60,
                .guard_max_crashes = 3,
                .guard_window = 10 * 60,
                .keep_snapshots = 5,
        };
}

void oobd_config_done(OobdConfig *c) {
        if (!c)
                return;
        free(c->metadata_url);
        free(c->targets_url);
        free(c->ca_file);
        free(c->device_id);
        strv_free(c->groups);
        free(c->state_dir);
        free(c->metadata_dir);
        free(c->payload_dir);
        free(c->catalog_dir);
        free(c->outbox_dir);
        free(c->desktop_uri);
        free(c->desktop_name);
        free(c->reports_url);
        *c = (OobdConfig){};
}

static void config_donep(OobdConfig *c) {
        oobd_config_done(c);
}

_printf_(3, 4) static int refuse(char **ret_error, const char *path, const char *format, ...) {
        _cleanup_free_ char *what = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&what, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        free(*ret_error);
        *ret_error = NULL;
        if (asprintf(ret_error, "%s: %s", path, what) < 0)
                return -ENOMEM;
        return -EPROTO;
}

static bool is_http_url(const char *s) {
        return strneq(s, "https://", 8) || strneq(s, "http://", 7);
}

/* Device IDs and group names travel in URLs, file names and reports. */
static bool word_is_safe(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > DEVICE_ID_MAX)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_' || *p == '.'))
                        return false;
        return true;
}

/* Set *field to DIR/NAME when unset. */
static int default_path(char **field, const char *dir, const char *name) {
        if (*field)
                return 0;
        *field = path_join(dir, name);
        return *field ? 0 : -ENOMEM;
}

/* "https://h/repo/metadata/" -> "https://h/repo/targets". */
static int derive_targets_url(const char *metadata_url, char **ret) {
        _cleanup_free_ char *base = strdup(metadata_url);
        const char *host;
        char *slash;

        if (!base)
                return -ENOMEM;
        while (strlen(base) > 0 && base[strlen(base) - 1] == '/')
                base[strlen(base) - 1] = 0;
        host = strstr(base, "://");
        slash = strrchr(base, '/');
        if (!host || slash < host + 3 || !strchr(host + 3, '/'))
                return -EINVAL; /* no path component to replace */
        slash[1] = 0;
        if (asprintf(ret, "%stargets", base) < 0)
                return -ENOMEM;
        return 0;
}

static int config_finish(OobdConfig *c, const char *path, char **ret_error) {
        int r;

        if (c->metadata_url && !is_http_url(c->metadata_url))
                return refuse(ret_error, path, "[repository] metadata-url: '%s' is not an http(s) URL",
                              c->metadata_url);
        if (c->targets_url && !is_http_url(c->targets_url))
                return refuse(ret_error, path, "[repository] targets-url: '%s' is not an http(s) URL",
                              c->targets_url);
        if (c->metadata_url && !c->targets_url) {
                r = derive_targets_url(c->metadata_url, &c->targets_url);
                if (r == -EINVAL)
                        return refuse(ret_error, path,
                                      "[repository] metadata-url: '%s' has no path to put 'targets' beside; "
                                      "set targets-url",
                                      c->metadata_url);
                if (r < 0)
                        return r;
        }
        if (c->reports_url && !is_http_url(c->reports_url))
                return refuse(ret_error, path, "[reports] url: '%s' is not an http(s) URL", c->reports_url);

        if (!c->device_id) {
                sd_id128_t id;
                char buf[SD_ID128_STRING_MAX];

                r = sd_id128_get_machine_app_specific(OOB_DEVICE_APP_ID, &id);
                if (r < 0)
                        return refuse(ret_error, path,
                                      "[device] id: not set, and no machine ID to derive it from "
                                      "(/etc/machine-id: %s)",
                                      strerror(-r));
                c->device_id = strdup(sd_id128_to_string(id, buf));
                if (!c->device_id)
                        return -ENOMEM;
        } else if (!word_is_safe(c->device_id))
                return refuse(ret_error, path,
                              "[device] id: '%s' must be 1-%d letters, digits, '-', '_' or '.'",
                              c->device_id, DEVICE_ID_MAX);
        for (char **g = c->groups; g && *g; g++)
                if (!word_is_safe(*g))
                        return refuse(ret_error, path,
                                      "[device] groups: '%s' must be 1-%d letters, digits, '-', '_' or '.'",
                                      *g, DEVICE_ID_MAX);

        if (!c->state_dir) {
                c->state_dir = strdup("/var/lib/oob");
                if (!c->state_dir)
                        return -ENOMEM;
        }
        if (default_path(&c->metadata_dir, c->state_dir, "metadata") < 0 ||
            default_path(&c->payload_dir, c->state_dir, "payloads") < 0 ||
            default_path(&c->catalog_dir, c->state_dir, "system") < 0 ||
            default_path(&c->outbox_dir, c->state_dir, "outbox") < 0)
                return -ENOMEM;

        if (!c->desktop_uri && !(c->desktop_uri = strdup("qemu:///system")))
                return -ENOMEM;
        if (!c->desktop_name && !(c->desktop_name = strdup("oob-desktop")))
                return -ENOMEM;

        if (c->shutdown_agent_timeout == 0 || c->shutdown_acpi_timeout == 0)
                return refuse(ret_error, path, "[desktop] shutdown timeouts must be longer than 0");
        if (c->max_download_time == 0)
                return refuse(ret_error, path, "[window] max-download-time must be longer than 0");
        if (c->trial_boot_timeout == 0 || c->trial_stability == 0)
                return refuse(ret_error, path,
                              "[window] trial-boot-timeout and trial-stability must be longer "
                              "than 0");
        if (c->guard_max_crashes > 0 && c->guard_window == 0)
                return refuse(ret_error, path,
                              "[guard] window must be longer than 0 (or max-crashes = 0 to turn "
                              "the guard off)");
        if (c->keep_snapshots == 0)
                return refuse(ret_error, path, "[retention] keep-snapshots must be at least 1");
        return 0;
}

int oobd_config_load(const char *path, bool must_exist, OobdConfig *ret, char **ret_error) {
        _cleanup_(config_donep) OobdConfig c = {};
        int r;

        assert_return(path, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(ret_error, -EINVAL);

        config_defaults(&c);
        r = config_parse_file(path, config_items, ELEMENTSOF(config_items), &c, ret_error);
        if (r == -ENOENT && !must_exist) {
                log_debug("%s: not found, using the defaults", path);
                free(*ret_error);
                *ret_error = NULL;
        } else if (r < 0)
                return r;

        r = config_finish(&c, path, ret_error);
        if (r < 0)
                return r;

        *ret = c;
        c = (OobdConfig){};
        return 0;
}

/* The value of item it in c as the reference file spells it ("" for unset). */
static char *format_value(const OobdConfig *c, const ConfigItem *it) {
        const void *field = (const uint8_t *) c + it->offset;
        char *s = NULL;

        if (it->parse == config_parse_string || it->parse == config_parse_path)
                return strdup(*(char *const *) field ?: "");
        if (it->parse == config_parse_bool)
                return strdup(*(const bool *) field ? "yes" : "no");
        if (it->parse == config_parse_unsigned)
                return asprintf(&s, "%u", *(const unsigned *) field) < 0 ? NULL : s;
        if (it->parse == config_parse_seconds)
                return config_format_seconds(*(const unsigned *) field);
        if (it->parse == config_parse_bytes)
                return config_format_bytes(*(const uint64_t *) field);
        if (it->parse == config_parse_strv) {
                char *const *l = *(char **const *) field;
                size_t n = 1;

                for (size_t k = 0; l && l[k]; k++)
                        n += strlen(l[k]) + 1;
                s = calloc(1, n);
                for (size_t k = 0; s && l && l[k]; k++) {
                        if (k > 0)
                                strcat(s, " ");
                        strcat(s, l[k]);
                }
                return s;
        }
        assert(!"a config item whose type the dump does not know");
        return NULL;
}

int oobd_config_dump(const OobdConfig *c, FILE *f) {
        const char *section = NULL;

        assert_return(c, -EINVAL);
        assert_return(f, -EINVAL);

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *it = &config_items[i];
                _cleanup_free_ char *value = format_value(c, it);

                if (!value)
                        return -ENOMEM;
                if (!section || !streq(section, it->section)) {
                        fprintf(f, "%s[%s]\n", section ? "\n" : "", it->section);
                        section = it->section;
                }
                fprintf(f, "%s =%s%s\n", it->key, *value ? " " : "", value);
        }
        return ferror(f) ? -EIO : 0;
}

void oobd_config_fetch_options(const OobdConfig *c, FetchOptions *ret) {
        *ret = (FetchOptions){
                .allow_http = c->allow_http,
                .ca_file = c->ca_file,
                .total_timeout_sec = c->max_download_time,
                .max_bytes_per_sec = c->bandwidth_limit,
        };
}

void oobd_config_tuf_options(const OobdConfig *c, TufClientOptions *ret) {
        *ret = (TufClientOptions){
                .metadata_dir = c->metadata_dir,
                .metadata_url = c->metadata_url,
                .target_base_url = c->targets_url,
        };
        oobd_config_fetch_options(c, &ret->fetch);
}
