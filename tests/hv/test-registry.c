/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hv/registry.c against real hives: a Windows-like disk built once per run
 * by tests/fixtures/make-windows-disk (256 MiB, GPT), its hives edited
 * through hivex by our code, and every result read back by independent
 * tools: qemu-img convert + dd + ntfscat to get a hive out of the disk,
 * hivexget to read it.
 */
#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "hv.h"

/* Not the defaults of make-windows-disk, so that they are seen flowing through. */
#define BUILD "22631"
#define UBR "4317"
#define USER "bob"

static char tmpdir[] = "/tmp/oob-test-registry.XXXXXX";
static char disk[256];                 /* the pristine fixture disk, never written */
static char hives[256];                /* its hives, extracted with ntfscat */
static char scratch[256];              /* per test */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
        return remove(p);
}

/* Run a shell command; its stdout (trimmed of the final newline) into out. */
static int run(char *out, size_t size, const char *fmt, ...) _printf_(3, 4);
static int run(char *out, size_t size, const char *fmt, ...) {
        char cmd[8192];
        va_list ap;
        FILE *p;
        size_t n = 0;
        int status;

        va_start(ap, fmt);
        ck_assert_int_lt(vsnprintf(cmd, sizeof(cmd), fmt, ap), (int) sizeof(cmd));
        va_end(ap);

        p = popen(cmd, "r");
        ck_assert_ptr_nonnull(p);
        if (out) {
                n = fread(out, 1, size - 1, p);
                out[n] = 0;
                if (n > 0 && out[n - 1] == '\n')
                        out[n - 1] = 0;
        } else {
                char buf[4096];
                while (fread(buf, 1, sizeof(buf), p) > 0)
                        ;
        }
        status = pclose(p);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* tests/fixtures/make-windows-disk from the top of the tree, or above our binary. */
static void find_script(char *buf, size_t size) {
        char exe[PATH_MAX];
        ssize_t n;

        if (access("tests/fixtures/make-windows-disk", X_OK) == 0) {
                ck_assert_ptr_nonnull(realpath("tests/fixtures/make-windows-disk", buf));
                return;
        }
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        ck_assert_int_gt(n, 0);
        exe[n] = 0;
        for (char *slash = strrchr(exe, '/'); slash; slash = strrchr(exe, '/')) {
                *slash = 0;
                if (snprintf(buf, size, "%s/tests/fixtures/make-windows-disk", exe) >= (int) size)
                        continue;
                if (access(buf, X_OK) == 0)
                        return;
        }
        ck_abort_msg("tests/fixtures/make-windows-disk not found (run the tests from the top of the tree)");
}

/* A file of the Windows partition (GPT partition 3) of a qcow2 disk, by
 * tools that share no code with ours. */
static void extract(const char *image, const char *ntfs_path, const char *out) {
        ck_assert_int_eq(run(NULL, 0,
                             "set -e; r=%s/extract.raw; p=%s/extract.part; "
                             "qemu-img convert -f qcow2 -O raw '%s' $r; "
                             "set -- $(sgdisk -i 3 $r | awk '/^First sector:/{s=$3}/^Partition size:/{n=$3}END{print s, n}'); "
                             "dd if=$r of=$p bs=1M iflag=skip_bytes,count_bytes skip=$(($1 * 512)) "
                             "count=$(($2 * 512)) status=none; "
                             "ntfscat $p '%s' > '%s'; rm -f $r $p",
                             tmpdir, tmpdir, image, ntfs_path, out),
                         0);
}

/* Once per run (unchecked fixture, in the parent): the disk and its hives. */
static void suite_setup(void) {
        char script[PATH_MAX], out[4096];

        if (disk[0])
                return;
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
        find_script(script, sizeof(script));
        snprintf(disk, sizeof(disk), "%s/disk.qcow2", tmpdir);
        /* A "hive" of random bytes in the volume, for the corrupt case. */
        ck_assert_int_eq(run(NULL, 0, "head -c 65536 /dev/urandom > %s/broken", tmpdir), 0);
        ck_assert_msg(run(out, sizeof(out),
                          "'%s' '%s' --size 256M --build " BUILD " --ubr " UBR " --user " USER
                          " --put %s/broken=Users/" USER "/broken.dat 2>&1",
                          script, disk, tmpdir) == 0,
                      "make-windows-disk failed: %s", out);

        snprintf(hives, sizeof(hives), "%s/hives", tmpdir);
        ck_assert_int_eq(mkdir(hives, 0700), 0);
        ck_assert_int_eq(run(NULL, 0,
                             "set -e; r=%s/x.raw; qemu-img convert -O raw '%s' $r; "
                             "set -- $(sgdisk -i 3 $r | awk '/^First sector:/{s=$3}/^Partition size:/{n=$3}END{print s, n}'); "
                             "dd if=$r of=%s/x.part bs=1M iflag=skip_bytes,count_bytes skip=$(($1 * 512)) "
                             "count=$(($2 * 512)) status=none; rm -f $r; cd %s; "
                             "for h in SYSTEM SOFTWARE SAM; do ntfscat ../x.part Windows/System32/config/$h > $h; done; "
                             "ntfscat ../x.part Users/" USER "/NTUSER.DAT > NTUSER.DAT; rm -f ../x.part",
                             tmpdir, disk, tmpdir, hives),
                         0);
}

static void suite_teardown(void) {
        if (disk[0])
                nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Per test: a scratch dir with copies of the hives. */
static void setup(void) {
        snprintf(scratch, sizeof(scratch), "%s/scratch.%d", tmpdir, (int) getpid());
        ck_assert_int_eq(mkdir(scratch, 0700), 0);
        ck_assert_int_eq(run(NULL, 0, "cp %s/* %s/", hives, scratch), 0);
}

static void teardown(void) {
        nftw(scratch, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *scratch_file(const char *name) {
        static char buf[4][PATH_MAX];
        static unsigned i;
        char *p = buf[i++ % 4];

        snprintf(p, PATH_MAX, "%s/%s", scratch, name);
        return p;
}

/* hivexget FILE KEY [NAME]: 0 and its output, or its failure. */
static int hivexget(char *out, size_t size, const char *file, const char *key, const char *name) {
        return run(out, size, "hivexget '%s' '%s' %s%s%s 2>/dev/null", file, key,
                   name ? "'" : "", name ?: "", name ? "'" : "");
}

static RegistryValue sz(RegistryType type, const char *s) {
        RegistryValue v = { .type = type };

        ck_assert_int_eq(strv_extend(&v.strings, s), 0);
        return v;
}

/* ---- reading ---------------------------------------------------------------- */

START_TEST(test_get_every_kind) {
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        RegistryValue v = {};

        ck_assert_int_eq(registry_hive_open_file(scratch_file("SYSTEM"), false, &h), 0);

        ck_assert_int_eq(registry_get(h, "Select", "Current", &v), 0);
        ck_assert_int_eq(v.type, REGISTRY_DWORD);
        ck_assert_uint_eq(v.number, 1);
        ck_assert_uint_eq(v.size, 4);
        registry_value_done(&v);

        /* Through CurrentControlSet, names in any case. */
        ck_assert_int_eq(registry_get(h, "currentcontrolset\\CONTROL\\computername\\ComputerName",
                                      "computername", &v), 0);
        ck_assert_int_eq(v.type, REGISTRY_SZ);
        ck_assert_uint_eq(strv_length(v.strings), 1);
        ck_assert_str_eq(v.strings[0], "DESKTOP-OOB");
        /* the raw bytes: UTF-16LE with its terminator */
        ck_assert_uint_eq(v.size, 2 * (strlen("DESKTOP-OOB") + 1));
        ck_assert_mem_eq(v.data, "D\0E\0S\0K\0", 8);
        registry_value_done(&v);

        ck_assert_int_eq(registry_get(h, "\\ControlSet001\\Services\\LanmanWorkstation", "DependOnService", &v), 0);
        ck_assert_int_eq(v.type, REGISTRY_MULTI_SZ);
        ck_assert_uint_eq(strv_length(v.strings), 3);
        ck_assert_str_eq(v.strings[0], "Bowser");
        ck_assert_str_eq(v.strings[1], "MRxSmb20");
        ck_assert_str_eq(v.strings[2], "NSI");
        registry_value_done(&v);

        ck_assert_int_eq(registry_get(h, "ControlSet001\\Services\\disk", "ImagePath", &v), 0);
        ck_assert_int_eq(v.type, REGISTRY_EXPAND_SZ);
        ck_assert_str_eq(v.strings[0], "System32\\drivers\\disk.sys");
        registry_value_done(&v);

        ck_assert_int_eq(registry_get(h, "ControlSet001\\Services\\disk", "NoSuchValue", &v), -ENOENT);
        ck_assert_int_eq(registry_get(h, "ControlSet001\\Services\\NoSuchKey", "Start", &v), -ENOENT);
        ck_assert_int_eq(registry_get(h, "Select", NULL, &v), -ENOENT);        /* no default value */
        ck_assert_int_eq(registry_get(h, "Select\\", "Current", &v), -EINVAL);
        ck_assert_int_eq(registry_get(h, "ControlSet001\\\\Services", "x", &v), -EINVAL);
        /* Nothing was handed out on failure. */
        ck_assert_ptr_null(v.strings);
        ck_assert_ptr_null(v.data);
}
END_TEST

/* ---- writing, read back by hivexget ------------------------------------------ */

START_TEST(test_set_every_type) {
        static const uint8_t blob[] = { 0x00, 0x01, 0xfe, 0xff, 0x00, 0x7f };
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        RegistryValue v = {}, in;
        char out[4096];
        const char *file = scratch_file("SOFTWARE");

        ck_assert_int_eq(registry_hive_open_file(file, true, &h), 0);

        /* Keys are created as needed; non-ASCII text including a surrogate pair. */
        in = sz(REGISTRY_SZ, "Grüße ✓ \xf0\x9d\x84\x9e");
        ck_assert_int_eq(registry_set(h, "Oob\\Test", "Text", &in), 0);
        registry_value_done(&in);
        in = sz(REGISTRY_EXPAND_SZ, "%SystemRoot%\\oob");
        ck_assert_int_eq(registry_set(h, "Oob\\Test", "Expand", &in), 0);
        registry_value_done(&in);
        in = sz(REGISTRY_SZ, "the default");
        ck_assert_int_eq(registry_set(h, "Oob\\Test", NULL, &in), 0);
        registry_value_done(&in);
        in = (RegistryValue) { .type = REGISTRY_MULTI_SZ };
        ck_assert_int_eq(strv_extend(&in.strings, "a"), 0);
        ck_assert_int_eq(strv_extend(&in.strings, "ü"), 0);
        ck_assert_int_eq(strv_extend(&in.strings, "c d"), 0);
        ck_assert_int_eq(registry_set(h, "Oob\\Test", "Multi", &in), 0);
        registry_value_done(&in);
        in = (RegistryValue) { .type = REGISTRY_DWORD, .number = 0xdeadbeef };
        ck_assert_int_eq(registry_set(h, "Oob\\Test", "Dword", &in), 0);
        in = (RegistryValue) { .type = REGISTRY_QWORD, .number = 0x0123456789abcdefULL };
        ck_assert_int_eq(registry_set(h, "Oob\\Test", "Qword", &in), 0);
        in = (RegistryValue) { .type = REGISTRY_BINARY, .data = (uint8_t *) blob, .size = sizeof(blob) };
        ck_assert_int_eq(registry_set(h, "Oob\\Test", "Binary", &in), 0);
        /* Replacing one value (name in another case) keeps the others. */
        in = (RegistryValue) { .type = REGISTRY_DWORD, .number = 7 };
        ck_assert_int_eq(registry_set(h, "oob\\TEST", "dWORD", &in), 0);

        ck_assert_int_eq(registry_hive_commit(h), 0);
        h = registry_hive_close(h);

        /* Independent reader: hivexget prints .reg-style lines. */
        ck_assert_int_eq(hivexget(out, sizeof(out), file, "Oob\\Test", NULL), 0);
        ck_assert_msg(strstr(out, "\"@\"=\"the default\""), "%s", out);
        ck_assert_msg(strstr(out, "\"Expand\"=str(2):\"%SystemRoot%\\\\oob\""), "%s", out);
        ck_assert_msg(strstr(out, "\"Multi\"=hex(7):61,00,00,00,fc,00,00,00,63,00,20,00,64,00,00,00,00,00"), "%s", out);
        ck_assert_msg(strstr(out, "\"dWORD\"=dword:00000007"), "%s", out);
        ck_assert_msg(!strstr(out, "deadbeef"), "%s", out);
        ck_assert_msg(strstr(out, "\"Qword\"=hex(11):ef,cd,ab,89,67,45,23,01"), "%s", out);
        ck_assert_msg(strstr(out, "\"Binary\"=hex(3):00,01,fe,ff,00,7f"), "%s", out);
        ck_assert_int_eq(hivexget(out, sizeof(out), file, "Oob\\Test", "Text"), 0);
        ck_assert_str_eq(out, "Grüße ✓ \xf0\x9d\x84\x9e");
        /* Seven values, no duplicate of the replaced one. */
        ck_assert_int_eq(run(out, sizeof(out), "hivexget '%s' 'Oob\\Test' | wc -l", file), 0);
        ck_assert_str_eq(out, "7");
        /* The rest of the hive is still there. */
        ck_assert_int_eq(hivexget(out, sizeof(out), file, "Microsoft\\Windows NT\\CurrentVersion", "CurrentBuild"), 0);
        ck_assert_str_eq(out, BUILD);

        /* And our own reader agrees, after a reopen. */
        ck_assert_int_eq(registry_hive_open_file(file, false, &h), 0);
        ck_assert_int_eq(registry_get(h, "Oob\\Test", "Text", &v), 0);
        ck_assert_str_eq(v.strings[0], "Grüße ✓ \xf0\x9d\x84\x9e");
        registry_value_done(&v);
        ck_assert_int_eq(registry_get(h, "Oob\\Test", "Qword", &v), 0);
        ck_assert_int_eq(v.type, REGISTRY_QWORD);
        ck_assert_uint_eq(v.number, 0x0123456789abcdefULL);
        registry_value_done(&v);
        ck_assert_int_eq(registry_get(h, "Oob\\Test", "Binary", &v), 0);
        ck_assert_int_eq(v.type, REGISTRY_BINARY);
        ck_assert_uint_eq(v.size, sizeof(blob));
        ck_assert_mem_eq(v.data, blob, sizeof(blob));
        registry_value_done(&v);
        ck_assert_int_eq(registry_get(h, "Oob\\Test", "Multi", &v), 0);
        ck_assert_uint_eq(strv_length(v.strings), 3);
        ck_assert_str_eq(v.strings[1], "ü");
        registry_value_done(&v);
        ck_assert_int_eq(registry_get(h, "Oob\\Test", "", &v), 0);
        ck_assert_str_eq(v.strings[0], "the default");
        registry_value_done(&v);
}
END_TEST

START_TEST(test_refuses_bad_values) {
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        RegistryValue in = { .type = REGISTRY_SZ };
        char out[4096];
        uint8_t big[16345] = {};
        const char *file = scratch_file("SOFTWARE");

        ck_assert_int_eq(registry_hive_open_file(file, true, &h), 0);

        ck_assert_int_eq(registry_set(h, "Bad\\Key", "x", &in), -EINVAL);       /* no string */
        ck_assert_int_eq(strv_extend(&in.strings, "one"), 0);
        ck_assert_int_eq(strv_extend(&in.strings, "two"), 0);
        ck_assert_int_eq(registry_set(h, "Bad\\Key", "x", &in), -EINVAL);       /* two */
        registry_value_done(&in);
        in = sz(REGISTRY_SZ, "\xc3\x28");                                      /* not UTF-8 */
        ck_assert_int_eq(registry_set(h, "Bad\\Key", "x", &in), -EINVAL);
        registry_value_done(&in);
        in = (RegistryValue) { .type = REGISTRY_MULTI_SZ };
        ck_assert_int_eq(strv_extend(&in.strings, "a"), 0);
        ck_assert_int_eq(strv_extend(&in.strings, ""), 0);                     /* would end the list */
        ck_assert_int_eq(registry_set(h, "Bad\\Key", "x", &in), -EINVAL);
        registry_value_done(&in);
        in = (RegistryValue) { .type = REGISTRY_DWORD, .number = 0x100000000ULL };
        ck_assert_int_eq(registry_set(h, "Bad\\Key", "x", &in), -ERANGE);
        in = (RegistryValue) { .type = REGISTRY_BINARY, .data = big, .size = sizeof(big) };
        ck_assert_int_eq(registry_set(h, "Bad\\Key", "x", &in), -EFBIG);
        in.size = sizeof(big) - 1;                                              /* the cell limit itself */
        ck_assert_int_eq(registry_set(h, "Big", "x", &in), 0);
        in = (RegistryValue) { .type = REGISTRY_DWORD, .number = 1 };
        ck_assert_int_eq(registry_set(h, "Bad\\", "x", &in), -EINVAL);
        ck_assert_int_eq(registry_set(h, "Bad\\\\Key", "x", &in), -EINVAL);
        /* CurrentControlSet is never created: SOFTWARE has no Select. */
        ck_assert_int_eq(registry_set(h, "CurrentControlSet\\Services\\x", "Start", &in), -ENOENT);

        ck_assert_int_eq(registry_hive_commit(h), 0);
        /* No key was created for a refused value. */
        ck_assert_int_ne(hivexget(out, sizeof(out), file, "Bad", NULL), 0);
        ck_assert_int_ne(hivexget(out, sizeof(out), file, "CurrentControlSet", NULL), 0);
        ck_assert_int_eq(run(out, sizeof(out), "hivexget '%s' Big x | wc -c", file), 0);
        ck_assert_str_eq(out, "16344");
}
END_TEST

START_TEST(test_delete) {
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        RegistryValue v = {};
        char out[4096];
        const char *file = scratch_file("SYSTEM");

        ck_assert_int_eq(registry_hive_open_file(file, true, &h), 0);

        /* One value goes, the others of the key stay. */
        ck_assert_int_eq(registry_delete_value(h, "ControlSet001\\Services\\disk", "group"), 0);
        ck_assert_int_eq(registry_get(h, "ControlSet001\\Services\\disk", "Group", &v), -ENOENT);
        ck_assert_int_eq(registry_delete_value(h, "ControlSet001\\Services\\disk", "Group"), -ENOENT);
        ck_assert_int_eq(registry_delete_value(h, "ControlSet001\\Services\\nokey", "Group"), -ENOENT);

        /* A key with subkeys and values, recursively. */
        ck_assert_int_eq(registry_delete_key(h, "CurrentControlSet\\Control\\ComputerName"), 0);
        ck_assert_int_eq(registry_delete_key(h, "CurrentControlSet\\Control\\ComputerName"), -ENOENT);
        ck_assert_int_eq(registry_get(h, "ControlSet001\\Control\\ComputerName\\ComputerName", "ComputerName", &v),
                         -ENOENT);
        /* Never the root. */
        ck_assert_int_eq(registry_delete_key(h, ""), -EINVAL);
        ck_assert_int_eq(registry_delete_key(h, "\\"), -EINVAL);

        ck_assert_int_eq(registry_hive_commit(h), 0);
        h = registry_hive_close(h);

        ck_assert_int_eq(hivexget(out, sizeof(out), file, "ControlSet001\\Services\\disk", NULL), 0);
        ck_assert_msg(!strstr(out, "Group"), "%s", out);
        ck_assert_msg(strstr(out, "\"Start\"=dword:00000000"), "%s", out);
        ck_assert_msg(strstr(out, "\"ImagePath\"=str(2):"), "%s", out);
        ck_assert_int_eq(run(out, sizeof(out), "hivexget '%s' 'ControlSet001\\Services\\disk' | wc -l", file), 0);
        ck_assert_str_eq(out, "4");
        ck_assert_int_ne(hivexget(out, sizeof(out), file, "ControlSet001\\Control\\ComputerName", NULL), 0);
        /* Its sibling is untouched. */
        ck_assert_int_eq(hivexget(out, sizeof(out), file, "ControlSet001\\Control\\CrashControl", "AutoReboot"), 0);
        ck_assert_str_eq(out, "1");
}
END_TEST

START_TEST(test_current_control_set) {
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        RegistryValue v = {}, in;
        char out[4096];
        const char *file = scratch_file("SYSTEM");

        ck_assert_int_eq(registry_hive_open_file(file, true, &h), 0);

        /* A second control set; Select\Current decides which one is meant. */
        in = sz(REGISTRY_SZ, "SECOND");
        ck_assert_int_eq(registry_set(h, "ControlSet002\\Control\\ComputerName\\ComputerName", "ComputerName", &in), 0);
        registry_value_done(&in);
        in = (RegistryValue) { .type = REGISTRY_DWORD, .number = 2 };
        ck_assert_int_eq(registry_set(h, "Select", "Current", &in), 0);
        ck_assert_int_eq(registry_get(h, "CurrentControlSet\\Control\\ComputerName\\ComputerName", "ComputerName", &v), 0);
        ck_assert_str_eq(v.strings[0], "SECOND");
        registry_value_done(&v);

        /* Writes through the alias land in the control set it names. */
        in = (RegistryValue) { .type = REGISTRY_DWORD, .number = 1 };
        ck_assert_int_eq(registry_set(h, "Select", "Current", &in), 0);
        in = (RegistryValue) { .type = REGISTRY_DWORD, .number = 3 };
        ck_assert_int_eq(registry_set(h, "CurrentControlSet\\Services\\OobTest", "Start", &in), 0);
        ck_assert_int_eq(registry_get(h, "CurrentControlSet\\Control\\ComputerName\\ComputerName", "ComputerName", &v), 0);
        ck_assert_str_eq(v.strings[0], "DESKTOP-OOB");
        registry_value_done(&v);

        /* Current naming a control set that does not exist. */
        in = (RegistryValue) { .type = REGISTRY_DWORD, .number = 9 };
        ck_assert_int_eq(registry_set(h, "Select", "Current", &in), 0);
        ck_assert_int_eq(registry_get(h, "CurrentControlSet\\Services\\OobTest", "Start", &v), -ENOENT);
        ck_assert_int_eq(registry_set(h, "CurrentControlSet\\Services\\OobTest", "Start", &in), -ENOENT);
        in = (RegistryValue) { .type = REGISTRY_DWORD, .number = 1 };
        ck_assert_int_eq(registry_set(h, "Select", "Current", &in), 0);

        ck_assert_int_eq(registry_hive_commit(h), 0);
        h = registry_hive_close(h);

        ck_assert_int_eq(hivexget(out, sizeof(out), file, "ControlSet001\\Services\\OobTest", "Start"), 0);
        ck_assert_str_eq(out, "3");
        ck_assert_int_ne(hivexget(out, sizeof(out), file, "ControlSet009", NULL), 0);
        ck_assert_int_ne(hivexget(out, sizeof(out), file, "CurrentControlSet", NULL), 0);
}
END_TEST

/* ---- refusals ------------------------------------------------------------------- */

START_TEST(test_read_only) {
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        RegistryValue in = { .type = REGISTRY_DWORD, .number = 5 };
        const char *file = scratch_file("SYSTEM");
        struct stat before, after;

        ck_assert_int_eq(stat(file, &before), 0);
        ck_assert_int_eq(registry_hive_open_file(file, false, &h), 0);
        ck_assert_int_eq(registry_set(h, "Select", "Current", &in), -EROFS);
        ck_assert_int_eq(registry_set(h, "New\\Key", "x", &in), -EROFS);
        ck_assert_int_eq(registry_delete_value(h, "Select", "Current"), -EROFS);
        ck_assert_int_eq(registry_delete_key(h, "Select"), -EROFS);
        ck_assert_int_eq(registry_hive_commit(h), -EROFS);
        h = registry_hive_close(h);
        ck_assert_int_eq(run(NULL, 0, "cmp -s '%s' '%s/SYSTEM'", file, hives), 0);

        /* A writable hive with no change writes nothing either. */
        ck_assert_int_eq(registry_hive_open_file(file, true, &h), 0);
        ck_assert_int_eq(registry_hive_commit(h), 0);
        h = registry_hive_close(h);
        ck_assert_int_eq(stat(file, &after), 0);
        ck_assert_uint_eq(before.st_ino, after.st_ino);
        ck_assert_int_eq(run(NULL, 0, "cmp -s '%s' '%s/SYSTEM'", file, hives), 0);
}
END_TEST

START_TEST(test_corrupt) {
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        const char *file = scratch_file("corrupt");

        /* Random bytes, an empty file, a header alone, a bad checksum, a hbin gone. */
        ck_assert_int_eq(run(NULL, 0, "head -c 65536 /dev/urandom > '%s'", file), 0);
        ck_assert_int_eq(registry_hive_open_file(file, false, &h), -EPROTO);
        ck_assert_int_eq(run(NULL, 0, ": > '%s'", file), 0);
        ck_assert_int_eq(registry_hive_open_file(file, false, &h), -EPROTO);
        ck_assert_int_eq(run(NULL, 0, "head -c 4096 '%s/SAM' > '%s'", hives, file), 0);
        ck_assert_int_eq(registry_hive_open_file(file, false, &h), -EPROTO);
        ck_assert_int_eq(run(NULL, 0, "cp '%s/SAM' '%s' && printf X | dd of='%s' bs=1 seek=48 conv=notrunc status=none",
                             hives, file, file), 0);
        ck_assert_int_eq(registry_hive_open_file(file, true, &h), -EPROTO);
        ck_assert_int_eq(run(NULL, 0, "cp '%s/SAM' '%s' && printf XXXX | dd of='%s' bs=1 seek=4096 conv=notrunc status=none",
                             hives, file, file), 0);
        ck_assert_int_eq(registry_hive_open_file(file, true, &h), -EPROTO);
        ck_assert_ptr_null(h);
        /* The intact one opens: the refusals above were about the damage. */
        ck_assert_int_eq(registry_hive_open_file(scratch_file("SAM"), true, &h), 0);
        ck_assert_int_eq(registry_hive_open_file("/nonexistent/hive", false, &h), -ENOENT);
}
END_TEST

/* Primary and secondary sequence numbers differ: the hive's true state is
 * in its transaction logs. Readable as it is, never written. */
START_TEST(test_pending_log) {
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        const char *file = scratch_file("SYSTEM");
        uint8_t base[4096];
        uint32_t sum = 0;
        int fd;

        fd = open(file, O_RDWR | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pread(fd, base, sizeof(base), 0), (ssize_t) sizeof(base));
        base[4]++;                              /* primary sequence number */
        for (size_t i = 0; i < 0x1fc; i += 4)
                sum ^= (uint32_t) base[i] | (uint32_t) base[i + 1] << 8 | (uint32_t) base[i + 2] << 16 |
                       (uint32_t) base[i + 3] << 24;
        for (size_t i = 0; i < 4; i++)
                base[0x1fc + i] = (uint8_t) (sum >> (8 * i));
        ck_assert_int_eq(pwrite(fd, base, sizeof(base), 0), (ssize_t) sizeof(base));
        close(fd);

        ck_assert_int_eq(registry_hive_open_file(file, true, &h), -EUCLEAN);
        ck_assert_int_eq(registry_hive_open_file(file, false, &h), 0);
}
END_TEST

/* ---- through the disk layer: qcow2 -> NBD -> NTFS -> hive -> back ------------------- */

static void open_windows(const char *image, bool writable, OfflineDisk **ret_d, NtfsVolume **ret_v) {
        Partition p = {};
        VolumeRefusal refusal = VOLUME_OK;

        ck_assert_int_eq(offline_disk_open(image, writable, false, ret_d), 0);
        ck_assert_int_eq(disk_find_windows(*ret_d, &p), 0);
        ck_assert_uint_eq(p.number, 3);
        ck_assert_int_eq(ntfs_volume_open(*ret_d, &p, writable, ret_v, &refusal), 0);
        ck_assert_int_eq(refusal, VOLUME_OK);
}

START_TEST(test_volume_commit) {
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        RegistryValue in = {}, got = {};
        char image[PATH_MAX], out[4096];
        char **names = NULL;

        /* An overlay: the fixture disk stays pristine for the other tests. */
        snprintf(image, sizeof(image), "%s/work.qcow2", scratch);
        ck_assert_int_eq(run(NULL, 0, "qemu-img create -q -f qcow2 -F qcow2 -b '%s' '%s'", disk, image), 0);

        open_windows(image, true, &d, &v);
        /* The path in another case, as Windows would accept it. */
        ck_assert_int_eq(registry_hive_open(v, "windows/system32/config/system", true, &h), 0);
        in = sz(REGISTRY_EXPAND_SZ, "System32\\drivers\\oobtest.sys");
        ck_assert_int_eq(registry_set(h, "CurrentControlSet\\Services\\oobtest", "ImagePath", &in), 0);
        registry_value_done(&in);
        in = (RegistryValue) { .type = REGISTRY_DWORD, .number = 1 };
        ck_assert_int_eq(registry_set(h, "CurrentControlSet\\Services\\oobtest", "Type", &in), 0);
        ck_assert_int_eq(registry_delete_value(h, "CurrentControlSet\\Services\\disk", "Group"), 0);
        ck_assert_int_eq(registry_hive_commit(h), 0);
        h = registry_hive_close(h);

        /* Still open: the hive reads back through the volume, and nothing is left beside it. */
        ck_assert_int_eq(registry_hive_open(v, "Windows/System32/config/SYSTEM", false, &h), 0);
        ck_assert_int_eq(registry_get(h, "ControlSet001\\Services\\oobtest", "Type", &got), 0);
        ck_assert_uint_eq(got.number, 1);
        registry_value_done(&got);
        h = registry_hive_close(h);
        ck_assert_int_eq(ntfs_volume_list(v, "Windows/System32/config", &names), 0);
        ck_assert_uint_eq(strv_length(names), 5);
        for (char **n = names; *n; n++)
                ck_assert_msg(streq(*n, "SYSTEM") || streq(*n, "SOFTWARE") || streq(*n, "SAM") ||
                              streq(*n, "SECURITY") || streq(*n, "DEFAULT"), "unexpected %s", *n);
        names = strv_free(names);
        v = ntfs_volume_close(v);
        d = offline_disk_close(d);

        /* Independently: qemu-img, dd, ntfscat, hivexget. */
        extract(image, "Windows/System32/config/SYSTEM", scratch_file("SYSTEM.after"));
        ck_assert_int_eq(hivexget(out, sizeof(out), scratch_file("SYSTEM.after"), "ControlSet001\\Services\\oobtest", NULL), 0);
        ck_assert_msg(strstr(out, "\"ImagePath\"=str(2):\"System32\\\\drivers\\\\oobtest.sys\""), "%s", out);
        ck_assert_msg(strstr(out, "\"Type\"=dword:00000001"), "%s", out);
        ck_assert_int_eq(hivexget(out, sizeof(out), scratch_file("SYSTEM.after"), "ControlSet001\\Services\\disk", NULL), 0);
        ck_assert_msg(!strstr(out, "Group"), "%s", out);
        ck_assert_int_eq(hivexget(out, sizeof(out), scratch_file("SYSTEM.after"), "ControlSet001\\Control\\ComputerName\\ComputerName",
                                  "ComputerName"), 0);
        ck_assert_str_eq(out, "DESKTOP-OOB");
        /* The on-disk spelling of the hive's name is kept. */
        ck_assert_int_eq(run(out, sizeof(out),
                             "set -e; r=%s/l.raw; qemu-img convert -O raw '%s' $r; "
                             "set -- $(sgdisk -i 3 $r | awk '/^First sector:/{s=$3}/^Partition size:/{n=$3}END{print s, n}'); "
                             "dd if=$r of=$r.p bs=1M iflag=skip_bytes,count_bytes skip=$(($1 * 512)) count=$(($2 * 512)) status=none; "
                             "ntfsls -p /Windows/System32/config $r.p | tr '\\n' ' '; rm -f $r $r.p",
                             scratch, image), 0);
        ck_assert_str_eq(out, ". .. DEFAULT SAM SECURITY SOFTWARE SYSTEM ");
}
END_TEST

START_TEST(test_volume_read_only) {
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        RegistryValue in = { .type = REGISTRY_DWORD, .number = 2 }, got = {};

        open_windows(disk, false, &d, &v);
        ck_assert_int_eq(registry_hive_open(v, "Users/" USER "/NTUSER.DAT", false, &h), 0);
        ck_assert_int_eq(registry_get(h, "Environment", "TEMP", &got), 0);
        ck_assert_int_eq(got.type, REGISTRY_EXPAND_SZ);
        ck_assert_str_eq(got.strings[0], "%USERPROFILE%\\AppData\\Local\\Temp");
        registry_value_done(&got);
        ck_assert_int_eq(registry_set(h, "Environment", "X", &in), -EROFS);
        h = registry_hive_close(h);

        /* A writable hive of a read-only volume cannot be written back. */
        ck_assert_int_eq(registry_hive_open(v, "Users/" USER "/NTUSER.DAT", true, &h), 0);
        ck_assert_int_eq(registry_set(h, "Environment", "X", &in), 0);
        ck_assert_int_eq(registry_hive_commit(h), -EROFS);

        ck_assert_int_eq(registry_hive_open(v, "Windows/System32/config/NOSUCH", false, &h), -ENOENT);
        ck_assert_int_eq(registry_hive_open(v, "Users/" USER "/broken.dat", false, &h), -EPROTO);
        ck_assert_int_eq(registry_hive_open(v, "Users/" USER "/broken.dat", true, &h), -EPROTO);
}
END_TEST

START_TEST(test_windows_info) {
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
        _cleanup_(windows_info_done) WindowsInfo w = {};

        open_windows(disk, false, &d, &v);
        ck_assert_int_eq(windows_info_read(v, &w), 0);
        /* Windows 11 still calls itself "Windows 10" here. */
        ck_assert_str_eq(w.product_name, "Windows 10 Pro");
        ck_assert_str_eq(w.edition_id, "Professional");
        ck_assert_str_eq(w.display_version, "23H2");
        ck_assert_uint_eq(w.build, 22631);
        ck_assert_uint_eq(w.ubr, 4317);
}
END_TEST

static Suite *registry_suite(void) {
        Suite *s = suite_create("registry");
        TCase *tc;

        tc = tcase_create("hive files");
        tcase_add_unchecked_fixture(tc, suite_setup, NULL);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_get_every_kind);
        tcase_add_test(tc, test_set_every_type);
        tcase_add_test(tc, test_refuses_bad_values);
        tcase_add_test(tc, test_delete);
        tcase_add_test(tc, test_current_control_set);
        tcase_add_test(tc, test_read_only);
        tcase_add_test(tc, test_corrupt);
        tcase_add_test(tc, test_pending_log);
        suite_add_tcase(s, tc);

        tc = tcase_create("volume");
        tcase_add_unchecked_fixture(tc, suite_setup, NULL);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_volume_commit);
        tcase_add_test(tc, test_volume_read_only);
        tcase_add_test(tc, test_windows_info);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(registry_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        suite_teardown();
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
