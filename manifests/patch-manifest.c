/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The patch manifest (format "oob-patch/1"): what a patch needs and the
 * ordered actions to apply to the powered-off Windows volume. The schema is
 * documented in FORMATS.md; this file is its only implementation, so the two
 * must change together.
 *
 * Everything here is checked before anything is applied: the manifest comes
 * from a TUF target whose hashes matched, but a correctly signed mistake must
 * still fail here, with a message that says where, rather than half-way
 * through patching a disk.
 */

#include <inttypes.h>

#include "yaml-internal.h"

#define PATCH_FORMAT "oob-patch/1"
#define ID_MAX 128
#define NAME_MAX_LENGTH 64
#define TEXT_MAX 4096
#define PATH_MAX_LENGTH 4096
#define COMPONENT_MAX 255
#define LIST_MAX 1000
#define REGISTRY_VALUE_NAME_MAX 16383
/* extract's max-size: at least one byte, at most 1 TiB. */
#define MAX_SIZE_MAX (UINT64_C(1) << 40)

#define TRIAL_BOOT_TIMEOUT_DEFAULT 300
#define TRIAL_BOOT_TIMEOUT_MIN 5
#define TRIAL_BOOT_TIMEOUT_MAX (4 * 3600)
#define TRIAL_STABILITY_DEFAULT 600
#define TRIAL_STABILITY_MIN 5
#define TRIAL_STABILITY_MAX (24 * 3600)
#define TRIAL_ATTEMPTS_DEFAULT 1
#define TRIAL_ATTEMPTS_MAX 10

static const char *const patch_action_type_table[_PATCH_ACTION_TYPE_MAX] = {
        [PATCH_ACTION_EXTRACT] = "extract",
        [PATCH_ACTION_DELETE] = "delete",
        [PATCH_ACTION_REGISTRY_SET] = "registry-set",
        [PATCH_ACTION_REGISTRY_DELETE] = "registry-delete",
        [PATCH_ACTION_STAGE_PACKAGE] = "stage-package",
        [PATCH_ACTION_OS_IMAGE] = "os-image",
};

DEFINE_STRING_TABLE_LOOKUP(patch_action_type, PatchActionType);

static const char *const registry_value_type_table[_REG_VALUE_TYPE_MAX] = {
        [REG_VALUE_SZ] = "REG_SZ",
        [REG_VALUE_EXPAND_SZ] = "REG_EXPAND_SZ",
        [REG_VALUE_MULTI_SZ] = "REG_MULTI_SZ",
        [REG_VALUE_DWORD] = "REG_DWORD",
        [REG_VALUE_QWORD] = "REG_QWORD",
        [REG_VALUE_BINARY] = "REG_BINARY",
};

DEFINE_STRING_TABLE_LOOKUP(registry_value_type, RegistryValueType);

static void patch_action_done(PatchAction *a) {
        free(a->payload);
        free(a->dest);
        strv_free(a->paths);
        free(a->hive);
        free(a->key);
        free(a->value_name);
        strv_free(a->strings);
        free(a->binary);
        free(a->command);
        free(a->slot);
        *a = (PatchAction){};
}

PatchManifest *patch_manifest_free(PatchManifest *m) {
        if (!m)
                return NULL;
        free(m->id);
        free(m->description);
        strv_free(m->device_groups);
        strv_free(m->payloads);
        for (size_t i = 0; i < m->n_actions; i++)
                patch_action_done(&m->actions[i]);
        free(m->actions);
        free(m);
        return NULL;
}

/* ---- value checks ---------------------------------------------------------- */

static const char *target_path_problem(const char *s) {
        if (tuf_target_path_is_valid(s))
                return NULL;
        return "a payload is a target path: relative, '/'-separated, no empty, '.' or '..' parts";
}

static const char *safe_name_problem(const char *s) {
        return manifest_name_is_safe(s, NAME_MAX_LENGTH) ? NULL
                                                         : "names use only A-Z a-z 0-9 . _ - (at most 64)";
}

/*
 * A path on the Windows volume, relative to its root. Backslashes are taken
 * as separators (how Windows admins write paths) and turned into '/'. Refused:
 * absolute paths, drive letters and alternate data streams (any ':'), empty,
 * '.' and '..' parts, characters Windows does not allow in names, and names
 * ending in a dot or space (NTFS stores them, Windows cannot open them).
 */
static const char *volume_path_problem(char *s) {
        const char *c;

        for (char *p = s; *p; p++)
                if (*p == '\\')
                        *p = '/';
        if (strlen(s) > PATH_MAX_LENGTH)
                return "longer than 4096 bytes";
        if (s[0] == '/')
                return "absolute paths are not allowed (paths are relative to the volume root)";
        if (strchr(s, ':'))
                return "':' is not allowed (no drive letters or alternate data streams)";
        for (const char *p = s; *p; p++)
                if ((uint8_t) *p < 0x20 || strchr("<>\"|?*", *p))
                        return "control characters and < > \" | ? * are not allowed";

        c = s;
        for (;;) {
                size_t n = strcspn(c, "/");

                if (n == 0)
                        return "empty path components are not allowed";
                if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return "'.' and '..' are not allowed";
                if (n > COMPONENT_MAX)
                        return "a path component is longer than 255 bytes";
                if (c[n - 1] == '.' || c[n - 1] == ' ')
                        return "names ending in a dot or a space are not allowed";
                if (c[n] == 0)
                        return NULL;
                c += n + 1;
        }
}

static int parse_volume_path(const YNode *n, const char *key, bool allow_root, char **ret,
                             char **ret_error) {
        _cleanup_free_ char *s = NULL;
        const char *problem;
        int r;

        r = ynode_string(n, key, PATH_MAX_LENGTH, &s, ret_error);
        if (r < 0)
                return r;
        if (allow_root && streq(s, ".")) {
                *ret = TAKE_PTR(s);
                return 0;
        }
        problem = volume_path_problem(s);
        if (problem)
                return ynode_error(n, ret_error, -EPROTO, "'%s': invalid volume path: %s", key, problem);
        *ret = TAKE_PTR(s);
        return 0;
}

static int parse_target_path(const YNode *m, const char *what, const char *key, char **ret,
                             char **ret_error) {
        _cleanup_free_ char *s = NULL;
        int r;

        r = ymap_required_string(m, what, key, PATH_MAX_LENGTH, &s, ret_error);
        if (r < 0)
                return r;
        if (!tuf_target_path_is_valid(s))
                return ynode_error(ynode_get(m, key), ret_error, -EPROTO, "'%s': %s", key,
                                   target_path_problem(s));
        *ret = TAKE_PTR(s);
        return 0;
}

/* "1048576", "64K", "512M", "2G": bytes, or binary multiples (1024). */
static int parse_size(const char *s, uint64_t *ret) {
        uint64_t v = 0, unit = 1;
        const char *p = s;

        if (!*p || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
                return -EINVAL;         /* empty, or a leading zero */
        for (; *p >= '0' && *p <= '9'; p++) {
                if (v > (UINT64_MAX - (uint64_t) (*p - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (*p - '0');
        }
        if (p == s)
                return -EINVAL;
        if (*p) {
                const char *units = "KMG", *u = strchr(units, *p);

                if (!u || p[1])
                        return -EINVAL;
                unit = UINT64_C(1) << (10 * (u - units + 1));
        }
        if (v > UINT64_MAX / unit)
                return -ERANGE;
        *ret = v * unit;
        return 0;
}

/* extract's optional max-size; 0 when absent. */
static int parse_max_size(const YNode *m, uint64_t *ret, char **ret_error) {
        const YNode *n = ynode_get(m, "max-size");
        uint64_t v;
        int r;

        if (!n) {
                *ret = 0;
                return 0;
        }
        if (n->type != YNODE_SCALAR || ynode_is_null(n))
                return ynode_error(n, ret_error, -EPROTO,
                                   "'max-size' must be a size like 1048576, 64K, 512M or 2G");
        r = parse_size(n->value, &v);
        if (r == -ERANGE || (r >= 0 && (v < 1 || v > MAX_SIZE_MAX)))
                return ynode_error(n, ret_error, -EPROTO, "'max-size' must be between 1 byte and 1024G");
        if (r < 0) {
                _cleanup_free_ char *d = yaml_display(n->value);
                return ynode_error(n, ret_error, -EPROTO,
                                   "'max-size' must be a size like 1048576, 64K, 512M or 2G, not '%s'",
                                   strna(d));
        }
        *ret = v;
        return 0;
}

static int parse_hive(const YNode *m, const char *what, char **ret, char **ret_error) {
        _cleanup_free_ char *s = NULL;
        const char *user;
        int r;

        r = ymap_required_string(m, what, "hive", NAME_MAX_LENGTH + 16, &s, ret_error);
        if (r < 0)
                return r;
        if (streq(s, "SYSTEM") || streq(s, "SOFTWARE")) {
                *ret = TAKE_PTR(s);
                return 0;
        }
        user = strneq(s, "NTUSER:", STRLEN("NTUSER:")) ? s + STRLEN("NTUSER:") : NULL;
        if (!user || !manifest_name_is_safe(user, NAME_MAX_LENGTH))
                return ynode_error(
                        ynode_get(m, "hive"), ret_error, -EPROTO,
                        "'hive' must be SYSTEM, SOFTWARE or NTUSER:<user> (user: A-Z a-z 0-9 . _ -)");
        *ret = TAKE_PTR(s);
        return 0;
}

/* A key path under the hive: backslash-separated, no empty parts. */
static const char *registry_key_problem(const char *s) {
        static const char *const roots[] = {"HKEY_", "HKLM", "HKCU", "HKU", "HKCR"};
        const char *c = s;

        for (size_t i = 0; i < ELEMENTSOF(roots); i++)
                if (strncasecmp(s, roots[i], strlen(roots[i])) == 0)
                        return "the key is relative to the hive: leave out the root (e.g. 'HKLM\\SYSTEM\\')";
        for (const char *p = s; *p; p++)
                if ((uint8_t) *p < 0x20)
                        return "control characters are not allowed";
        for (;;) {
                size_t n = strcspn(c, "\\");

                if (n == 0)
                        return "empty parts are not allowed (no leading, trailing or doubled '\\')";
                if (n > COMPONENT_MAX)
                        return "a key name is longer than 255 bytes";
                if (c[n] == 0)
                        return NULL;
                c += n + 1;
        }
}

static int parse_registry_key(const YNode *m, const char *what, const char *hive, char **ret,
                              char **ret_error) {
        _cleanup_free_ char *s = NULL;
        const char *problem;
        int r;

        r = ymap_required_string(m, what, "key", PATH_MAX_LENGTH, &s, ret_error);
        if (r < 0)
                return r;
        problem = registry_key_problem(s);
        /* CurrentControlSet is a link Windows creates at boot: an offline
         * SYSTEM hive has only ControlSet001, ... (Select\Current says which). */
        if (!problem && streq(hive, "SYSTEM") && strncasecmp(s, "CurrentControlSet", 17) == 0 &&
            (s[17] == 0 || s[17] == '\\'))
                problem = "an offline SYSTEM hive has no CurrentControlSet: name the control set "
                          "(ControlSet001)";
        if (problem)
                return ynode_error(ynode_get(m, "key"), ret_error, -EPROTO,
                                   "'key': invalid registry key: %s", problem);
        *ret = TAKE_PTR(s);
        return 0;
}

/* Like ynode_string(), but a quoted "" is a valid (empty) value: the default
 * value of a key has the empty name, and REG_SZ may hold "". */
static int registry_string(const YNode *n, const char *key, size_t max, char **ret, char **ret_error) {
        if (n->type == YNODE_SCALAR && !n->plain && n->length == 0) {
                char *s = strdup("");
                if (!s)
                        return -ENOMEM;
                *ret = s;
                return 0;
        }
        return ynode_string(n, key, max, ret, ret_error);
}

static int parse_value_name(const YNode *m, const char *what, bool required, char **ret, char **ret_error) {
        const YNode *n = ynode_get(m, "name");

        if (!n) {
                if (required)
                        return ynode_error(
                                m, ret_error, -EPROTO,
                                "missing required key 'name' in %s (use name: \"\" for the default value)",
                                what);
                *ret = NULL;
                return 0;
        }
        return registry_string(n, "name", REGISTRY_VALUE_NAME_MAX, ret, ret_error);
}

static int hexdigit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* "0102ff", or bytes of two digits separated by ',', ':' or white space
 * ("01,02,ff" as regedit exports them). */
static int parse_binary(const YNode *n, uint8_t **ret, size_t *ret_size, char **ret_error) {
        _cleanup_free_ uint8_t *buf = NULL;
        static const char seps[] = ",: \t\n";
        const char *s;
        size_t k = 0;
        bool separated;

        if (n->type != YNODE_SCALAR)
                return ynode_error(n, ret_error, -EPROTO,
                                   "'value' of REG_BINARY must be a hex string, not a %s",
                                   ynode_type_to_string(n->type));
        if (ynode_is_null(n))
                return ynode_error(n, ret_error, -EPROTO,
                                   "'value' has no value (use \"\" for empty REG_BINARY)");

        s = n->value;
        separated = strpbrk(s, seps) != NULL;
        buf = malloc(n->length / 2 + 1);
        if (!buf)
                return -ENOMEM;

        for (const char *p = s; *p;) {
                size_t len;

                p += strspn(p, seps);
                if (!*p)
                        break;
                len = strcspn(p, seps);
                if ((separated && len != 2) || len % 2 != 0)
                        return ynode_error(
                                n, ret_error, -EPROTO,
                                "'value' of REG_BINARY must be hex bytes, e.g. \"0102ff\" or \"01,02,ff\"");
                for (size_t i = 0; i < len; i += 2) {
                        int hi = hexdigit(p[i]), lo = hexdigit(p[i + 1]);
                        if (hi < 0 || lo < 0)
                                return ynode_error(n, ret_error, -EPROTO,
                                                   "'value' of REG_BINARY contains a character that is not "
                                                   "a hex digit");
                        buf[k++] = (uint8_t) (hi << 4 | lo);
                }
                p += len;
        }

        *ret_size = k;
        *ret = TAKE_PTR(buf);
        return 0;
}

static int parse_registry_value(const YNode *m, PatchAction *a, char **ret_error) {
        _cleanup_free_ char *type = NULL;
        const YNode *v;
        RegistryValueType t;
        int r;

        r = ymap_required_string(m, "action 'registry-set'", "type", 32, &type, ret_error);
        if (r < 0)
                return r;
        t = registry_value_type_from_string(type);
        if (t < 0)
                return ynode_error(ynode_get(m, "type"), ret_error, -EPROTO,
                                   "'type' must be one of REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ, REG_DWORD, "
                                   "REG_QWORD, REG_BINARY");

        v = ynode_get(m, "value");
        if (!v)
                return ynode_error(m, ret_error, -EPROTO,
                                   "missing required key 'value' in action 'registry-set'");

        switch (t) {
        case REG_VALUE_SZ:
        case REG_VALUE_EXPAND_SZ: {
                _cleanup_strv_free_ char **l = calloc(2, sizeof(char *));
                if (!l)
                        return -ENOMEM;
                if (v->type != YNODE_SCALAR)
                        return ynode_error(v, ret_error, -EPROTO, "'value' of %s must be a string, not a %s",
                                           type, ynode_type_to_string(v->type));
                r = registry_string(v, "value", YAML_MAX_SIZE, &l[0], ret_error);
                if (r < 0)
                        return r;
                a->strings = TAKE_PTR(l);
                break;
        }
        case REG_VALUE_MULTI_SZ:
                if (v->type != YNODE_SEQUENCE)
                        return ynode_error(v, ret_error, -EPROTO,
                                           "'value' of REG_MULTI_SZ must be a list of strings, "
                                           "not a %s",
                                           ynode_is_null(v) ? "missing value"
                                                            : ynode_type_to_string(v->type));
                /* An empty string would end the list early: ynode_strv() refuses it. */
                r = ynode_strv(v, "value", YAML_MAX_NODES, YAML_MAX_SIZE, NULL, false, &a->strings,
                               ret_error);
                if (r < 0)
                        return r;
                break;
        case REG_VALUE_DWORD:
                r = ynode_uint(v, "value", 0, UINT32_MAX, &a->number, ret_error);
                if (r < 0)
                        return r;
                break;
        case REG_VALUE_QWORD:
                r = ynode_uint(v, "value", 0, UINT64_MAX, &a->number, ret_error);
                if (r < 0)
                        return r;
                break;
        case REG_VALUE_BINARY:
                r = parse_binary(v, &a->binary, &a->binary_size, ret_error);
                if (r < 0)
                        return r;
                break;
        default:
                return -EINVAL;
        }
        a->value_type = t;
        return 0;
}

/* ---- actions -------------------------------------------------------------------- */

static int parse_action_params(PatchActionType type, const YNode *p, PatchAction *a, char **ret_error) {
        char what[64];
        int r;

        snprintf(what, sizeof(what), "action '%s'", patch_action_type_to_string(type));

        switch (type) {

        case PATCH_ACTION_EXTRACT:
                r = ymap_check(p, what, (const char *const[]){"payload", "dest", "max-size", NULL},
                               ret_error);
                if (r < 0)
                        return r;
                r = parse_target_path(p, what, "payload", &a->payload, ret_error);
                if (r < 0)
                        return r;
                if (!ynode_get(p, "dest"))
                        return ynode_error(
                                p, ret_error, -EPROTO,
                                "missing required key 'dest' in %s (use dest: . for the volume root)", what);
                r = parse_volume_path(ynode_get(p, "dest"), "dest", true, &a->dest, ret_error);
                if (r < 0)
                        return r;
                return parse_max_size(p, &a->max_unpacked, ret_error);

        case PATCH_ACTION_DELETE: {
                _cleanup_strv_free_ char **l = NULL;

                if (p->type != YNODE_SEQUENCE)
                        return ynode_error(
                                p, ret_error, -EPROTO,
                                "'delete' takes a list of volume paths, e.g. [Windows/System32/old.sys]");
                if (p->n_items == 0)
                        return ynode_error(p, ret_error, -EPROTO, "'delete' lists no paths");
                if (p->n_items > LIST_MAX)
                        return ynode_error(p, ret_error, -EPROTO, "'delete' lists more than %d paths",
                                           LIST_MAX);
                l = calloc(p->n_items + 1, sizeof(char *));
                if (!l)
                        return -ENOMEM;
                for (size_t i = 0; i < p->n_items; i++) {
                        r = parse_volume_path(p->items[i], "delete", false, &l[i], ret_error);
                        if (r < 0)
                                return r;
                        for (size_t j = 0; j < i; j++)
                                if (streq(l[j], l[i]))
                                        return ynode_error(p->items[i], ret_error, -EPROTO,
                                                           "'delete' lists '%.64s' twice", l[i]);
                }
                a->paths = TAKE_PTR(l);
                return 0;
        }

        case PATCH_ACTION_REGISTRY_SET:
                r = ymap_check(p, what, (const char *const[]){"hive", "key", "name", "type", "value", NULL},
                               ret_error);
                if (r < 0)
                        return r;
                r = parse_hive(p, what, &a->hive, ret_error);
                if (r < 0)
                        return r;
                r = parse_registry_key(p, what, a->hive, &a->key, ret_error);
                if (r < 0)
                        return r;
                r = parse_value_name(p, what, true, &a->value_name, ret_error);
                if (r < 0)
                        return r;
                return parse_registry_value(p, a, ret_error);

        case PATCH_ACTION_REGISTRY_DELETE:
                r = ymap_check(p, what, (const char *const[]){"hive", "key", "name", NULL}, ret_error);
                if (r < 0)
                        return r;
                r = parse_hive(p, what, &a->hive, ret_error);
                if (r < 0)
                        return r;
                r = parse_registry_key(p, what, a->hive, &a->key, ret_error);
                if (r < 0)
                        return r;
                return parse_value_name(p, what, false, &a->value_name, ret_error);

        case PATCH_ACTION_STAGE_PACKAGE:
                r = ymap_check(p, what, (const char *const[]){"payload", "command", NULL}, ret_error);
                if (r < 0)
                        return r;
                r = parse_target_path(p, what, "payload", &a->payload, ret_error);
                if (r < 0)
                        return r;
                r = ymap_required_string(p, what, "command", TEXT_MAX, &a->command, ret_error);
                if (r < 0)
                        return r;
                if (strpbrk(a->command, "\n\t"))
                        return ynode_error(ynode_get(p, "command"), ret_error, -EPROTO,
                                           "'command' must be a single line without tabs");
                return 0;

        case PATCH_ACTION_OS_IMAGE:
                r = ymap_check(p, what, (const char *const[]){"payload", "slot", NULL}, ret_error);
                if (r < 0)
                        return r;
                r = parse_target_path(p, what, "payload", &a->payload, ret_error);
                if (r < 0)
                        return r;
                r = ymap_required_string(p, what, "slot", NAME_MAX_LENGTH, &a->slot, ret_error);
                if (r < 0)
                        return r;
                if (safe_name_problem(a->slot))
                        return ynode_error(ynode_get(p, "slot"), ret_error, -EPROTO, "'slot': %s",
                                           safe_name_problem(a->slot));
                return 0;

        default:
                return -EINVAL;
        }
}

static int parse_action(const YNode *item, PatchAction *a, char **ret_error) {
        static const char types[] =
                "extract, delete, registry-set, registry-delete, stage-package, os-image";
        PatchActionType type;

        if (item->type != YNODE_MAPPING || item->n_items == 0)
                return ynode_error(
                        item, ret_error, -EPROTO,
                        "an action is a mapping with one key, its type (%s), e.g. '- delete: [path]'",
                        types);

        type = patch_action_type_from_string(item->keys[0]->value);
        if (type < 0) {
                _cleanup_free_ char *d = yaml_display(item->keys[0]->value);
                return ynode_error(item->keys[0], ret_error, -EPROTO,
                                   "unknown action '%s' (expected one of %s)", strna(d), types);
        }
        if (item->n_items > 1) {
                const YNode *k = item->keys[1];
                _cleanup_free_ char *d = yaml_display(k->value);

                if (ynode_is_null(item->items[0]))
                        return ynode_error(k, ret_error, -EPROTO, "'%s' must be indented under '%s'",
                                           strna(d), patch_action_type_to_string(type));
                return ynode_error(k, ret_error, -EPROTO,
                                   "an action has exactly one key, its type; found '%s' after '%s'",
                                   strna(d), patch_action_type_to_string(type));
        }
        if (ynode_is_null(item->items[0]))
                return ynode_error(item->items[0], ret_error, -EPROTO, "action '%s' has no parameters",
                                   item->keys[0]->value);

        a->type = type;
        return parse_action_params(type, item->items[0], a, ret_error);
}

/* ---- the manifest ---------------------------------------------------------------- */

static int parse_applies_to(const YNode *n, PatchManifest *m, char **ret_error) {
        const YNode *g, *b;
        int r;

        r = ymap_check(n, "'applies-to'", (const char *const[]){"device-groups", "os-build", NULL},
                       ret_error);
        if (r < 0)
                return r;

        g = ynode_get(n, "device-groups");
        if (g) {
                r = ynode_strv(g, "device-groups", LIST_MAX, NAME_MAX_LENGTH, safe_name_problem, true,
                               &m->device_groups, ret_error);
                if (r < 0)
                        return r;
                if (!m->device_groups[0])
                        return ynode_error(
                                g, ret_error, -EPROTO,
                                "'device-groups' is empty (leave it out to apply to every device)");
        }

        b = ynode_get(n, "os-build");
        if (!b)
                return 0;
        if (b->type == YNODE_SCALAR) {
                /* os-build: 19045 means exactly that build. */
                r = ynode_uint(b, "os-build", 1, UINT64_MAX, &m->os_build_min, ret_error);
                if (r < 0)
                        return r;
                m->os_build_max = m->os_build_min;
                return 0;
        }
        r = ymap_check(b, "'os-build'", (const char *const[]){"min", "max", NULL}, ret_error);
        if (r < 0)
                return r;
        if (b->n_items == 0)
                return ynode_error(b, ret_error, -EPROTO, "'os-build' needs 'min', 'max' or both");
        r = ymap_optional_uint(b, "min", 1, UINT64_MAX, 0, &m->os_build_min, ret_error);
        if (r < 0)
                return r;
        r = ymap_optional_uint(b, "max", 1, UINT64_MAX, 0, &m->os_build_max, ret_error);
        if (r < 0)
                return r;
        if (m->os_build_max > 0 && m->os_build_min > m->os_build_max)
                return ynode_error(b, ret_error, -EPROTO,
                                   "'os-build': 'min' (%" PRIu64 ") is above 'max' (%" PRIu64 ")",
                                   m->os_build_min, m->os_build_max);
        return 0;
}

static int parse_trial(const YNode *n, TrialPolicy *t, char **ret_error) {
        const YNode *v;
        uint64_t x;
        int r;

        *t = (TrialPolicy){
                .boot_timeout_sec = TRIAL_BOOT_TIMEOUT_DEFAULT,
                .stability_sec = TRIAL_STABILITY_DEFAULT,
                .attempts = TRIAL_ATTEMPTS_DEFAULT,
        };
        if (!n)
                return 0;

        r = ymap_check(n, "'trial'", (const char *const[]){"boot-timeout", "stability", "attempts", NULL},
                       ret_error);
        if (r < 0)
                return r;

        v = ynode_get(n, "boot-timeout");
        if (v) {
                r = ynode_duration(v, "boot-timeout", TRIAL_BOOT_TIMEOUT_MIN, TRIAL_BOOT_TIMEOUT_MAX, &x,
                                   ret_error);
                if (r < 0)
                        return r;
                t->boot_timeout_sec = (unsigned) x;
        }
        v = ynode_get(n, "stability");
        if (v) {
                r = ynode_duration(v, "stability", TRIAL_STABILITY_MIN, TRIAL_STABILITY_MAX, &x, ret_error);
                if (r < 0)
                        return r;
                t->stability_sec = (unsigned) x;
        }
        r = ymap_optional_uint(n, "attempts", 1, TRIAL_ATTEMPTS_MAX, TRIAL_ATTEMPTS_DEFAULT, &x, ret_error);
        if (r < 0)
                return r;
        t->attempts = (unsigned) x;
        return 0;
}

/* Every action's payload must be listed; without a list, the list is the
 * actions' payloads in order of first use. */
static int check_payloads(const YNode *root, PatchManifest *m, char **ret_error) {
        const YNode *list = ynode_get(root, "payloads"), *actions = ynode_get(root, "actions");
        int r;

        for (size_t i = 0; i < m->n_actions; i++) {
                const char *p = m->actions[i].payload;
                bool listed = false;

                if (!p)
                        continue;
                for (char **q = m->payloads; *q; q++)
                        if (streq(*q, p))
                                listed = true;
                if (listed)
                        continue;
                if (list)
                        return ynode_error(
                                ynode_get(actions->items[i]->items[0], "payload"), ret_error, -EPROTO,
                                "'payload': '%s' is not listed under 'payloads' (line %u)", p, list->line);
                r = strv_extend(&m->payloads, p);
                if (r < 0)
                        return r;
        }
        return 0;
}

int patch_manifest_parse(const void *data, size_t size, PatchManifest **ret, char **ret_error) {
        static const char *const keys[] = {
                "format", "id", "version", "description", "applies-to", "payloads", "actions", "trial", NULL,
        };
        _cleanup_(patch_manifest_freep) PatchManifest *m = NULL;
        _cleanup_(ynode_freep) YNode *root = NULL;
        const YNode *v, *actions;
        int r;

        assert_return(data || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        r = yaml_tree_parse(data, size, &root, ret_error);
        if (r < 0)
                return r;
        r = ymap_check_format(root, "the patch manifest", PATCH_FORMAT, ret_error);
        if (r < 0)
                return r;
        r = ymap_check(root, "the patch manifest", keys, ret_error);
        if (r < 0)
                return r;

        m = calloc(1, sizeof(PatchManifest));
        if (!m)
                return -ENOMEM;

        r = ymap_required_string(root, "the patch manifest", "id", ID_MAX, &m->id, ret_error);
        if (r < 0)
                return r;
        if (!manifest_name_is_safe(m->id, ID_MAX) || m->id[0] == '.' || m->id[0] == '-' || m->id[0] == '_')
                return ynode_error(ynode_get(root, "id"), ret_error, -EPROTO,
                                   "'id' must start with a letter or digit and use only A-Z a-z 0-9 . _ - "
                                   "(at most %d)",
                                   ID_MAX);

        r = ymap_required_uint(root, "the patch manifest", "version", 1, UINT64_MAX, &m->version, ret_error);
        if (r < 0)
                return r;

        r = ymap_optional_string(root, "description", TEXT_MAX, &m->description, ret_error);
        if (r < 0)
                return r;

        v = ynode_get(root, "applies-to");
        if (v) {
                r = parse_applies_to(v, m, ret_error);
                if (r < 0)
                        return r;
        }

        v = ynode_get(root, "payloads");
        if (v)
                r = ynode_strv(v, "payloads", LIST_MAX, PATH_MAX_LENGTH, target_path_problem, true,
                               &m->payloads, ret_error);
        else {
                m->payloads = calloc(1, sizeof(char *));
                r = m->payloads ? 0 : -ENOMEM;
        }
        if (r < 0)
                return r;

        actions = ynode_get(root, "actions");
        if (!actions)
                return ynode_error(root, ret_error, -EPROTO,
                                   "missing required key 'actions' in the patch manifest");
        if (actions->type != YNODE_SEQUENCE)
                return ynode_error(actions, ret_error, -EPROTO, "'actions' must be a list, not a %s",
                                   ynode_is_null(actions) ? "missing value"
                                                          : ynode_type_to_string(actions->type));
        if (actions->n_items == 0)
                return ynode_error(actions, ret_error, -EPROTO, "'actions' is empty");
        if (actions->n_items > LIST_MAX)
                return ynode_error(actions, ret_error, -EPROTO, "'actions' has more than %d items",
                                   LIST_MAX);
        m->actions = calloc(actions->n_items, sizeof(PatchAction));
        if (!m->actions)
                return -ENOMEM;
        for (size_t i = 0; i < actions->n_items; i++) {
                /* Count the action first so that it is freed with m whatever it holds. */
                m->n_actions++;
                r = parse_action(actions->items[i], &m->actions[i], ret_error);
                if (r < 0)
                        return r;
        }

        r = check_payloads(root, m, ret_error);
        if (r < 0)
                return r;

        r = parse_trial(ynode_get(root, "trial"), &m->trial, ret_error);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(m);
        return 0;
}
