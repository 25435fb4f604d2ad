# SPDX-License-Identifier: LGPL-2.1-or-later
#
# oob: out-of-band update and recovery for client hypervisors.
# Read top to bottom: knobs, libraries, rooms, programs, tests, extras.

# ---- knobs ------------------------------------------------------------------
CC        ?= cc
# Where objects and programs go; the ASan/UBSan test build uses $(BUILD)/asan.
BUILD     ?= build
PREFIX    ?= /usr/local
DESTDIR   ?=
# WERROR=1 turns warnings into errors (CI sets it).
WERROR    ?= 0
# SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer.
SANITIZE  ?= 0
# Seconds each fuzzer runs under `make fuzz`.
FUZZ_SECONDS ?= 30
VERSION   := 0.1.0

# ---- libraries --------------------------------------------------------------
PKGS := libcurl openssl jansson yaml-0.1 libsystemd libarchive libnbd libntfs-3g hivex libvirt libvirt-qemu
TEST_PKGS := check

define need_pkg
$(if $(shell pkg-config --exists $(1) && echo yes),,$(error pkg-config cannot find '$(1)': run scripts/install-deps (as root) first))
endef
# check, demo, bench and fuzz install what is missing first, then build.
ifeq ($(filter clean check demo bench fuzz,$(MAKECMDGOALS)),)
$(foreach p,$(PKGS),$(call need_pkg,$(p)))
endif

WARNINGS := -Wall -Wextra -Wformat=2 -Wshadow -Wno-unused-parameter -Wmissing-prototypes \
            -Wstrict-prototypes -Wpointer-arith -Wvla -Wimplicit-fallthrough
ifeq ($(WERROR),1)
WARNINGS += -Werror
endif
SAN_FLAGS :=
ifeq ($(SANITIZE),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

ROOMS    := lib manifests updater recovery hv
CPPFLAGS += -D_GNU_SOURCE -DOOB_VERSION='"$(VERSION)"' $(addprefix -I,$(ROOMS))
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARNINGS) $(SAN_FLAGS) -MMD -MP $(shell pkg-config --cflags $(PKGS))
LDFLAGS  += $(SAN_FLAGS)
LDLIBS   += $(shell pkg-config --libs $(PKGS))

.DELETE_ON_ERROR:
# Program objects are reached only through $$(%_OBJS): without this make
# would treat them as intermediate, delete them and rebuild them every time.
.SECONDARY:
.SECONDEXPANSION:
.PHONY: all check unit asan integration install clean demo bench fuzz

# ---- rooms: each folder's .c files form one object list -----------------------
lib_OBJS       := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard lib/*.c))
manifests_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard manifests/*.c))
updater_OBJS   := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard updater/*.c))
recovery_OBJS  := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard recovery/*.c))
hv_OBJS        := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard hv/*.c))
ROOM_OBJS      := $(foreach r,$(ROOMS),$($(r)_OBJS))
ROOM_LIB       := $(BUILD)/liboob.a

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(ROOM_LIB): $(ROOM_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# ---- programs ----------------------------------------------------------------
PROGRAMS := oobctl oob-repo oobd
BINS := $(addprefix $(BUILD)/bin/,$(PROGRAMS))
oobctl_OBJS   := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard programs/oobctl/*.c))
oob-repo_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard programs/oob-repo/*.c))
oobd_OBJS     := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard programs/oobd/*.c))

all: $(BINS)

$(BUILD)/bin/%: $$(%_OBJS) $(ROOM_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- tests -------------------------------------------------------------------
# One Check suite per module: tests/<room>/test-<module>.c -> $(BUILD)/tests/...
UNIT_SRCS := $(wildcard tests/*/test-*.c)
UNIT_BINS := $(patsubst %.c,$(BUILD)/%,$(UNIT_SRCS))
TEST_CFLAGS := $(shell pkg-config --cflags $(TEST_PKGS))
TEST_LIBS := $(shell pkg-config --libs $(TEST_PKGS))

$(BUILD)/tests/%: tests/%.c $(ROOM_LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $(TEST_CFLAGS) $(LDFLAGS) -o $@ $< $(ROOM_LIB) $(LDLIBS) $(TEST_LIBS)

unit: $(UNIT_BINS) $(BINS)
	scripts/run-tests unit $(UNIT_BINS)

# The same unit tests built with ASan and UBSan, in their own build tree.
asan:
	$(MAKE) --no-print-directory BUILD=$(BUILD)/asan SANITIZE=1 WERROR=$(WERROR) unit

# Integration tests run the real programs against real peers (nginx, node).
integration: $(BINS)
	scripts/run-tests integration $(sort $(wildcard tests/integration/test-*.sh))

check:
	scripts/install-deps
	$(MAKE) --no-print-directory all
	scripts/run-tests all "$(MAKE) --no-print-directory unit" \
	        "$(MAKE) --no-print-directory asan" "$(MAKE) --no-print-directory integration"

# ---- install -----------------------------------------------------------------
install: $(BINS)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf $(BUILD)

# ---- extras --------------------------------------------------------------------
# Two patch windows end to end on this machine (scripts/demo; as root).
demo:
	@scripts/install-deps
	@echo "demo: building (make all)"
	@$(MAKE) --no-print-directory -s all
	@BUILD=$(BUILD) scripts/demo

bench:
	scripts/install-deps
	$(MAKE) --no-print-directory all
	BUILD=$(BUILD) scripts/bench

# Benchmark programs (tests/bench/*.c); they may include library headers to
# measure a reference (e.g. jansson's plain parse) next to our code.
$(BUILD)/bench/%: tests/bench/%.c $(ROOM_LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(ROOM_LIB) $(LDLIBS)

# The idle-memory reference links libvirt alone (what it measures).
$(BUILD)/bench/bench-idle-ref: tests/bench/bench-idle-ref.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $$(pkg-config --cflags libvirt) $(LDFLAGS) -o $@ $< $$(pkg-config --libs libvirt)

# libFuzzer targets: tests/fuzz/fuzz-*.c, each linked with the production rooms.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz-*.c)
fuzz:
	scripts/install-deps
	$(MAKE) --no-print-directory BUILD=$(BUILD)/fuzz CC=clang \
	        CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" \
	        LDFLAGS="-fsanitize=fuzzer,address,undefined" $(BUILD)/fuzz/liboob.a
	@for s in $(FUZZ_SRCS); do \
	        n=$$(basename $$s .c); \
	        clang $(CPPFLAGS) -O1 -g -fsanitize=fuzzer,address,undefined \
	              $(shell pkg-config --cflags $(PKGS)) -o $(BUILD)/fuzz/$$n $$s \
	              $(BUILD)/fuzz/liboob.a $(LDLIBS) || exit 1; \
	        mkdir -p $(BUILD)/fuzz/corpus-$$n; \
	        echo "fuzz: running $$n for $(FUZZ_SECONDS)s"; \
	        $(BUILD)/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	              $(BUILD)/fuzz/corpus-$$n tests/fuzz/seeds/$${n#fuzz-} || exit 1; \
	done

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
