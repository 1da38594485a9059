# SPDX-License-Identifier: MIT
#
# libccvm build.  `make help` lists the targets.
#
# Everything is built under $(BUILD): build/plain by default, build/<san> for
# `SAN=...`, so switching sanitizers needs no `make clean`.  A change of CC or
# flags is noticed ($(BUILD)/.flags) and rebuilds that directory.

MAKEFLAGS += -r
.SUFFIXES:
.DELETE_ON_ERROR:

# ---------------------------------------------------------------------------
# Sources.  Lists are explicit, sorted, one file a line, so a new file is a
# one-line change and a stray file is never built by accident
# (`make check-lists` reports files that are in the tree but in no list).
# ---------------------------------------------------------------------------

# Public headers, installed and compiled alone by `make check-headers`:
# add new files here, sorted.
PUBLIC_HEADERS :=
PUBLIC_HEADERS += include/ccvm/api.h
PUBLIC_HEADERS += include/ccvm/backend.h
PUBLIC_HEADERS += include/ccvm/ccvm.h
PUBLIC_HEADERS += include/ccvm/explore.h
PUBLIC_HEADERS += include/ccvm/sync.h
PUBLIC_HEADERS += include/ccvm/version.h

# Hand-written man pages (the overviews); the page of every public call is
# generated from its header comment by scripts/gen-man.py (`make man`).
MAN_PAGES :=
MAN_PAGES += man/man3/libccvm-backend.3
MAN_PAGES += man/man3/libccvm-explore.3
MAN_PAGES += man/man3/libccvm-sync.3
MAN_PAGES += man/man3/libccvm.3

# Core library sources (lib/*.c): add new files here, sorted.
LIB_SRCS :=
LIB_SRCS += lib/attr.c
LIB_SRCS += lib/backend.c
LIB_SRCS += lib/error.c
LIB_SRCS += lib/explore.c
LIB_SRCS += lib/fault.c
LIB_SRCS += lib/gmem.c
LIB_SRCS += lib/guest.c
LIB_SRCS += lib/invariants.c
LIB_SRCS += lib/log.c
LIB_SRCS += lib/memslot.c
LIB_SRCS += lib/mmu.c
LIB_SRCS += lib/platform.c
LIB_SRCS += lib/scenarios.c
LIB_SRCS += lib/sched.c
LIB_SRCS += lib/stats.c
LIB_SRCS += lib/study.c
LIB_SRCS += lib/trace.c
LIB_SRCS += lib/vcpu.c
LIB_SRCS += lib/vm.c
LIB_SRCS += lib/xarray.c

# Backend sources (backends/<name>/*.c): add new files here, sorted.
BACKEND_SRCS :=
BACKEND_SRCS += backends/mock/mock.c
BACKEND_SRCS += backends/snp/snp-check.c
BACKEND_SRCS += backends/snp/snp-hw.c
BACKEND_SRCS += backends/snp/snp.c
BACKEND_SRCS += backends/tdx/tdx-check.c
BACKEND_SRCS += backends/tdx/tdx-module.c
BACKEND_SRCS += backends/tdx/tdx.c

# Check suites, tests/check_<area>.c, each exporting <area>_suite() and named
# in tests/main.c's CCVM_TEST_SUITES: add new files here, sorted.
TEST_SRCS :=
TEST_SRCS += tests/check_attr.c
TEST_SRCS += tests/check_badinput.c
TEST_SRCS += tests/check_backend.c
TEST_SRCS += tests/check_conformance.c
TEST_SRCS += tests/check_errors.c
TEST_SRCS += tests/check_explore.c
TEST_SRCS += tests/check_faultsweep.c
TEST_SRCS += tests/check_folio.c
TEST_SRCS += tests/check_gmem.c
TEST_SRCS += tests/check_guest.c
TEST_SRCS += tests/check_inplace.c
TEST_SRCS += tests/check_invariants.c
TEST_SRCS += tests/check_memslot.c
TEST_SRCS += tests/check_mmu.c
TEST_SRCS += tests/check_mutants.c
TEST_SRCS += tests/check_platform.c
TEST_SRCS += tests/check_sched.c
TEST_SRCS += tests/check_sched_lib.c
TEST_SRCS += tests/check_snp.c
TEST_SRCS += tests/check_snp_folio.c
TEST_SRCS += tests/check_snp_hw.c
TEST_SRCS += tests/check_stress.c
TEST_SRCS += tests/check_studies.c
TEST_SRCS += tests/check_tdx_busy.c
TEST_SRCS += tests/check_tdx_generation.c
TEST_SRCS += tests/check_tdx_guest.c
TEST_SRCS += tests/check_tdx_huge.c
TEST_SRCS += tests/check_tdx_lifecycle.c
TEST_SRCS += tests/check_tdx_module.c
TEST_SRCS += tests/check_tdx_teardown.c
TEST_SRCS += tests/check_trace.c
TEST_SRCS += tests/check_twins.c
TEST_SRCS += tests/check_vcpu.c
TEST_SRCS += tests/check_xarray.c

# The differential fuzzer (not a Check suite): one program that libFuzzer
# drives (`make fuzz`) or that replays a corpus (`make fuzz-replay`).
FUZZ_SRCS :=
FUZZ_SRCS += tests/fuzz_ccvm.c

# Example programs, one binary each from examples/<name>.c, built by plain
# `make`: add new names here, sorted.  `make run` runs minihv and minihv_inplace.
EXAMPLES :=
EXAMPLES += backend
EXAMPLES += contention
EXAMPLES += minihv
EXAMPLES += minihv_inplace
EXAMPLES += teardown
EXAMPLES += tour
EXAMPLES += trace

# Command-line tools, one binary each from tools/<name>.c, built by plain
# `make` into $(BUILD)/tools: add new names here, sorted.
TOOLS :=
TOOLS += ccvm-explore

# Mutants: deliberately broken builds of one library file each, used only by
# tests/check_mutants.c to show that the explorer finds what they break.
# Mutant <name> compiles <name>_SRC with -DCCVM_MUTANT_<NAME> (dashes
# become underscores) and links it, ahead of the library, into
# $(BUILD)/mutants/ccvm-explore-<name>.  Add new names here, sorted.
MUTANTS :=
MUTANTS += begin-forgets-range
MUTANTS += mirror-every-gen
MUTANTS += no-seq-retry
MUTANTS += snp-pending-after-walk
MUTANTS += snp-psmash-before-zap
MUTANTS += tdx-no-kick
MUTANTS += tdx-no-track
begin-forgets-range_SRC := lib/mmu.c
mirror-every-gen_SRC := lib/mmu.c
no-seq-retry_SRC := lib/fault.c
snp-pending-after-walk_SRC := backends/snp/snp.c
snp-psmash-before-zap_SRC := backends/snp/snp.c
tdx-no-kick_SRC := backends/tdx/tdx.c
tdx-no-track_SRC := backends/tdx/tdx.c

# Mutants whose failure a test of the suite itself shows (a deterministic
# twin, tests/check_twins.c), not a built-in scenario: each also links the
# whole test program, <name>.o ahead of the library, into
# $(BUILD)/mutants/ccvm-tests-<name>, which tests/check_mutants.c runs.
MUTANT_TESTS :=
MUTANT_TESTS += tdx-no-kick

# Benchmark programs, one binary each from bench/<name>.c, built and run by
# `make bench`: add new names here, sorted.  Extra libraries of a program go
# in <name>_LDLIBS.  A program states each goal on its stdout as one line
#   SUMMARY|<goal>|<ours>|<peer>|<ratio>|<met>
# (met is yes, no, or - for a figure shown without a goal; no field holds a
# '|'; bench/README.md has the details), and `make bench` ends with one
# table of the SUMMARY lines of every program, in the order they came.
BENCHES :=
BENCHES += bench_core
BENCHES += bench_first_touch
BENCHES += bench_inplace
BENCHES += bench_model_mem
BENCHES += bench_sched
BENCHES += bench_td_shutdown
BENCHES += bench_tdx_hugepage
BENCHES += bench_vcpus
BENCHES += bench_xarray
bench_core_LDLIBS := -lJudy
bench_xarray_LDLIBS := -lJudy

# Studies (docs/studies/): the scenario library studies/*.c below, linked
# into every study program and into the tests (tests/check_studies.c
# asserts each study's outcome), and one program per study,
# studies/<name>.c, run by `make seeds`: add new names here, sorted.  A
# study's plot script, if any, is studies/<name>.gp.
STUDY_LIB_SRCS :=
STUDY_LIB_SRCS += studies/s000.c
STUDY_LIB_SRCS += studies/s001.c
STUDY_LIB_SRCS += studies/s002.c
STUDY_LIB_SRCS += studies/s003.c
STUDY_LIB_SRCS += studies/s004.c
STUDY_LIB_SRCS += studies/study.c

STUDIES :=
STUDIES += study_000
STUDIES += study_001
STUDIES += study_002
STUDIES += study_003
STUDIES += study_004

# Check suites `make ci` also runs under ThreadSanitizer (CK_RUN_SUITE
# names, space separated; empty skips that step): all of them.  The
# suites without threads of their own add about two minutes, and cover
# the paths a threaded caller would take.
TSAN_SUITES ?= $(TEST_SRCS:tests/check_%.c=%)

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

VERSION := $(shell awk '$$2 == "CCVM_VERSION_STRING" { gsub(/"/, "", $$3); print $$3 }' include/ccvm/version.h)

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=

PKG_CONFIG ?= pkg-config
NM ?= nm
INSTALL ?= install

comma := ,
empty :=
space := $(empty) $(empty)

# SAN=asan, ubsan, tsan, or a comma-separated combination (asan,ubsan).
SAN_LIST := $(sort $(subst $(comma),$(space),$(SAN)))
ifneq ($(filter-out asan ubsan tsan,$(SAN_LIST)),)
$(error SAN=$(SAN): unknown sanitizer $(filter-out asan ubsan tsan,$(SAN_LIST)); use asan, ubsan, tsan or asan$(comma)ubsan)
endif
ifneq ($(and $(filter asan,$(SAN_LIST)),$(filter tsan,$(SAN_LIST))),)
$(error SAN=$(SAN): AddressSanitizer and ThreadSanitizer cannot be combined)
endif
SAN_CFLAGS_asan := -fsanitize=address
SAN_CFLAGS_ubsan := -fsanitize=undefined -fno-sanitize-recover=undefined
SAN_CFLAGS_tsan := -fsanitize=thread
SAN_CFLAGS := $(foreach s,$(SAN_LIST),$(SAN_CFLAGS_$(s))) \
	$(if $(SAN_LIST),-fno-omit-frame-pointer)

BUILD ?= build/$(if $(SAN_LIST),$(subst $(space),-,$(SAN_LIST)),plain)

CFLAGS ?= -O2 -g -Wall -Wextra
override CFLAGS += -std=c11 -D_GNU_SOURCE -Iinclude -pthread $(SAN_CFLAGS)

# The library's code placement (LIB_OBJ_CFLAGS below), so that it does not
# move with unrelated changes.  Functions on 64 bytes, loops on 32, and
# (x86-64, where the compiler takes it) no jump
# that crosses or ends on a 32-byte boundary, which Intel's microcode for
# its JCC erratum keeps out of the decoded-uop cache.  Without them the
# model's hot paths changed speed with code elsewhere: bench_vcpus -b tdx
# -n 1 read at 38 to 60 ns of CPU per read depending on the build, for
# changes that touched no access path (a kick, a zap's yield); with them
# 42-43 ns for both builds.  Only the library's objects: the padding in a
# caller's loop around <ccvm/sync.h>'s inline locks cost bench_sched's
# mutex goal 5% against the plain pthread loop beside it.
CODE_ALIGN_FLAGS := -falign-functions=64 -falign-loops=32 \
	$(firstword $(foreach f,-mbranches-within-32B-boundaries \
		-Wa$(comma)-mbranches-within-32B-boundaries, \
		$(if $(shell echo 'int x;' | $(CC) $(f) -Werror -x c -c -o /dev/null - \
			2>/dev/null && echo y),$(f))))
ifeq ($(WERROR),1)
override CFLAGS += -Werror
endif
# Benchmarks measure optimised code whatever CFLAGS says (see `bench`).
ifeq ($(BENCH_BUILD),1)
override CFLAGS += -O2
endif
LDFLAGS ?=
LDLIBS ?=

CHECK_CFLAGS = $(shell $(PKG_CONFIG) --cflags check)
CHECK_LIBS = $(shell $(PKG_CONFIG) --libs check)

# Sanitizer builds are slower: stretch Check's timeouts unless the caller
# chose a multiplier.
CHECK_TIMEOUT_MULTIPLIER := $(if $(filter tsan,$(SAN_LIST)),5,$(if $(SAN_LIST),3,1))
CHECK_ENV = CK_TIMEOUT_MULTIPLIER=$${CK_TIMEOUT_MULTIPLIER:-$(CHECK_TIMEOUT_MULTIPLIER)} \
	$(if $(filter tsan,$(SAN_LIST)),CCVM_STRESS_OPS=$${CCVM_STRESS_OPS:-$(STRESS_OPS_TSAN)}) \
	ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=1} \
	UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	TSAN_OPTIONS=$${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
# The stress suite's operation count (CCVM_STRESS_OPS) under ThreadSanitizer,
# which runs it several times slower; elsewhere it does 1,000,000.
STRESS_OPS_TSAN ?= 500000
# Suites to run, one after another (CK_RUN_SUITE names); empty runs all.
CHECK_SUITES ?=

# `make V=1` prints whole commands.
ifeq ($(V),1)
Q :=
msg =
else
Q := @
msg = @printf '  %-7s %s\n' '$(1)' '$(2)';
endif

# ---------------------------------------------------------------------------
# Derived names
# ---------------------------------------------------------------------------

LIB := $(BUILD)/libccvm.a
# The shared library: libccvm.so.$(VERSION), its SONAME libccvm.so.$(SOMAJOR)
# (bumped on an incompatible change of the interface), and the link-time
# name libccvm.so.  lib/libccvm.map versions the exported symbols.
SOMAJOR := $(shell awk '$$2 == "CCVM_VERSION_MAJOR" { print $$3 }' include/ccvm/version.h)
SONAME := libccvm.so.$(SOMAJOR)
SO := $(BUILD)/libccvm.so.$(VERSION)
SO_LINKS := $(BUILD)/$(SONAME) $(BUILD)/libccvm.so
SO_MAP := lib/libccvm.map
PC := $(BUILD)/ccvm.pc
LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRCS) $(BACKEND_SRCS))
TEST_OBJS := $(patsubst %.c,$(BUILD)/%.o,tests/main.c $(TEST_SRCS))
# The out-of-tree backend example without its main(): the conformance suite runs it.
EXAMPLE_BACKEND_OBJ := $(BUILD)/tests/example-backend.o
STUDY_LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(STUDY_LIB_SRCS))
STUDY_BINS := $(STUDIES:%=$(BUILD)/studies/%)
TEST_BIN := $(BUILD)/tests/ccvm-tests
EXAMPLE_BINS := $(EXAMPLES:%=$(BUILD)/examples/%)
TOOL_BINS := $(TOOLS:%=$(BUILD)/tools/%)
MUTANT_BINS := $(MUTANTS:%=$(BUILD)/mutants/ccvm-explore-%)
MUTANT_TEST_BINS := $(MUTANT_TESTS:%=$(BUILD)/mutants/ccvm-tests-%)
BENCH_BINS := $(BENCHES:%=$(BUILD)/bench/%)
FUZZ_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(FUZZ_SRCS))
FUZZ_BIN := $(BUILD)/tests/fuzz_ccvm
ALL_OBJS := $(LIB_OBJS) $(TEST_OBJS) $(EXAMPLE_BINS:=.o) $(TOOL_BINS:=.o) $(BENCH_BINS:=.o) $(FUZZ_OBJS) \
	$(STUDY_LIB_OBJS) $(STUDY_BINS:=.o)

# The backends `make run` tries, in this order, if their sources are built.
RUN_BACKENDS := $(foreach b,mock tdx snp,$(if $(filter backends/$(b)/%,$(BACKEND_SRCS)),$(b)))

# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------

.PHONY: all
all: $(LIB) $(SO) $(SO_LINKS) $(PC) $(EXAMPLE_BINS) $(TOOL_BINS) $(STUDY_BINS)

# Library internals (lib/*.h) are visible to the library, its tests and
# benchmarks.  Backends see only the public headers and their own, as an
# out-of-tree backend would (`make check-boundary`); examples only the
# public headers, like any VMM.
$(BUILD)/lib/%.o $(BUILD)/bench/%.o $(BUILD)/studies/%.o: OBJ_CFLAGS = -Ilib
$(BUILD)/backends/%.o: OBJ_CFLAGS =
$(BUILD)/tests/%.o: OBJ_CFLAGS = -Ilib -Istudies $(CHECK_CFLAGS)

# The library's objects go into both libccvm.a and libccvm.so: position
# independent, and hidden unless a public header marks them CCVM_API.
LIB_OBJ_CFLAGS := -fPIC -fvisibility=hidden $(CODE_ALIGN_FLAGS)

$(ALL_OBJS): $(BUILD)/%.o: %.c $(BUILD)/.flags
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(OBJ_CFLAGS) $(if $(filter $@,$(LIB_OBJS)),$(LIB_OBJ_CFLAGS)) \
		-MMD -MP -c -o $@ $<

$(LIB): $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)mkdir -p $(@D)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

# -z defs: the library names every library it needs (not under a
# sanitizer, whose runtime the program brings).
$(SO): $(LIB_OBJS) $(SO_MAP)
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) \
		-Wl,--version-script=$(SO_MAP) $(if $(SAN_LIST),,-Wl$(comma)-z$(comma)defs) \
		-o $@ $(LIB_OBJS) $(LDLIBS)

$(SO_LINKS): $(SO)
	$(Q)ln -sf $(notdir $(SO)) $@

$(EXAMPLE_BINS) $(TOOL_BINS) $(BENCH_BINS): %: %.o $(LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $($(notdir $@)_LDLIBS) $(LDLIBS)

# A mutant's object: its source built like a library object, plus the switch.
mutant_macro = CCVM_MUTANT_$(shell echo '$(1)' | tr 'a-z-' 'A-Z_')
.SECONDEXPANSION:
$(BUILD)/mutants/%.o: $$($$*_SRC) $(BUILD)/.flags
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(if $(filter lib/%,$($*_SRC)),-Ilib) $(LIB_OBJ_CFLAGS) \
		-D$(call mutant_macro,$*) -MMD -MP -c -o $@ $<

$(MUTANT_BINS): $(BUILD)/mutants/ccvm-explore-%: $(BUILD)/mutants/%.o \
		$(BUILD)/tools/ccvm-explore.o $(LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(BUILD)/tools/ccvm-explore.o $< $(LIB) $(LDLIBS)

-include $(MUTANTS:%=$(BUILD)/mutants/%.d)

$(STUDY_BINS): %: %.o $(STUDY_LIB_OBJS) $(LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(STUDY_LIB_OBJS) $(LIB) -lm $(LDLIBS)

# Rebuild everything in $(BUILD) when the compiler or flags change; the
# file is rewritten only then, so unchanged flags rebuild nothing.
TRACKED_FLAGS = $(subst ','\'',$(strip $(CC) $(CFLAGS) $(LIB_OBJ_CFLAGS) $(LDFLAGS) $(LDLIBS)))
$(BUILD)/.flags: FORCE
	$(Q)mkdir -p $(@D); flags='$(TRACKED_FLAGS)'; \
	if [ x"$$flags" != x"$$(cat $@ 2>/dev/null)" ]; then \
		[ ! -e $@ ] || echo "  FLAGS   changed: rebuilding $(BUILD)"; \
		printf '%s\n' "$$flags" > $@; \
	fi

# Regenerated on every run, replaced only when it changes, so that
# `make install PREFIX=...` always installs a matching file.
$(PC): lib/ccvm.pc.in include/ccvm/version.h FORCE
	$(Q)mkdir -p $(@D)
	$(Q)sed -e 's|@prefix@|$(PREFIX)|g' \
		-e 's|@libdir@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|g' \
		-e 's|@includedir@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|g' \
		-e 's|@version@|$(VERSION)|g' $< > $@.tmp
	$(Q)if cmp -s $@.tmp $@; then rm -f $@.tmp; \
	else mv $@.tmp $@; printf '  %-7s %s\n' GEN $@; fi

-include $(ALL_OBJS:.o=.d)

.PHONY: FORCE
FORCE:

# ---------------------------------------------------------------------------
# Dependencies of the tests and benchmarks: installed with apt-get when
# missing and running as root, otherwise named and the build fails.
# $(call need,what,test command,debian packages)
# ---------------------------------------------------------------------------

define need
	$(Q)if ! { $(2); } >/dev/null 2>&1; then \
		if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "  DEPS    $(1) missing: apt-get install $(3)"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get update -q && apt-get install -y -q $(3) || exit 1; \
			{ $(2); } >/dev/null 2>&1 || { \
				echo "error: $(1) still missing after installing $(3)" >&2; \
				exit 1; }; \
		else \
			echo "error: $(1) is missing; install it, e.g. on Debian/Ubuntu:" >&2; \
			echo "    sudo apt-get install $(3)" >&2; \
			exit 1; \
		fi; \
	fi
endef

.PHONY: check-deps bench-deps man-deps
check-deps:
	$(call need,Check (libcheck; found with pkg-config),$(PKG_CONFIG) --exists check,check pkg-config)

man-deps:
	$(call need,mandoc (man page linter),command -v mandoc,mandoc)

bench-deps:
	$(if $(filter -lJudy,$(foreach b,$(BENCHES),$($(b)_LDLIBS))), \
		$(call need,Judy (libjudy),printf '#include <Judy.h>\n' | $(CC) -E -x c - -o /dev/null,libjudy-dev))

# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

$(TEST_OBJS): | check-deps

$(EXAMPLE_BACKEND_OBJ): examples/backend.c $(BUILD)/.flags
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -DCCVM_EXAMPLE_NO_MAIN -MMD -MP -c -o $@ $<
-include $(EXAMPLE_BACKEND_OBJ:.o=.d)

# The mutant programs and the explorer are run by tests/check_mutants.c.
$(TEST_BIN): $(TEST_OBJS) $(EXAMPLE_BACKEND_OBJ) $(STUDY_LIB_OBJS) $(LIB) $(MUTANT_BINS) \
		$(MUTANT_TEST_BINS) $(TOOL_BINS) | check-deps
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(TEST_OBJS) $(EXAMPLE_BACKEND_OBJ) $(STUDY_LIB_OBJS) \
		$(LIB) $(CHECK_LIBS) \
		-lm $(LDLIBS)

$(MUTANT_TEST_BINS): $(BUILD)/mutants/ccvm-tests-%: $(BUILD)/mutants/%.o $(TEST_OBJS) \
		$(EXAMPLE_BACKEND_OBJ) $(STUDY_LIB_OBJS) $(LIB) | check-deps
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(TEST_OBJS) $(EXAMPLE_BACKEND_OBJ) $(STUDY_LIB_OBJS) \
		$< $(LIB) $(CHECK_LIBS) \
		-lm $(LDLIBS)

.PHONY: check check-build
check-build: $(TEST_BIN)

# CK_RUN_SUITE / CK_RUN_CASE in the environment select one suite / case.
# The boundary audit runs first: a backend reaching into the core fails
# `make check` before any test does.
check: check-boundary check-man check-trace $(TEST_BIN)
	$(call msg,RUN,$(TEST_BIN) $(CHECK_SUITES))
	$(Q)set -e; $(if $(strip $(CHECK_SUITES)), \
		for suite in $(CHECK_SUITES); do \
			CK_RUN_SUITE=$$suite $(CHECK_ENV) $(TEST_BIN); \
		done, \
		$(CHECK_ENV) $(TEST_BIN))

# ---------------------------------------------------------------------------
# Differential fuzzing (tests/fuzz_ccvm.c)
#
# `make fuzz` builds the harness and the library with clang's libFuzzer,
# ASan and UBSan in build/fuzz and fuzzes for FUZZ_SECONDS, starting from
# the seed corpus in tests/fuzz-corpus (new inputs go to build/fuzz/corpus,
# a failing one to build/fuzz/crash-*).  `make fuzz-smoke` is a short run
# (a CI step).  `make fuzz-replay` builds the same harness as a plain
# program with $(CC) in $(BUILD) and replays the corpus, so any compiler
# tests it; `make fuzz-seeds` rewrites the seed corpus from the harness.
# ---------------------------------------------------------------------------

FUZZ_CORPUS := tests/fuzz-corpus
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_SEED ?= 1
FUZZ_CC ?= clang
FUZZ_BUILD ?= build/fuzz
FUZZ_OPTIONS ?= -timeout=30 -rss_limit_mb=4096 -print_final_stats=1

# LIBFUZZER=1 (set by `make fuzz`): libFuzzer provides main().
$(FUZZ_OBJS): OBJ_CFLAGS = -Ilib $(if $(filter 1,$(LIBFUZZER)),-DCCVM_FUZZ_LIBFUZZER)

$(FUZZ_BIN): $(FUZZ_OBJS) $(LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $(if $(filter 1,$(LIBFUZZER)),-fsanitize=fuzzer) \
		-o $@ $(FUZZ_OBJS) $(LIB) $(LDLIBS)

# The harness as it was at FUZZ_OLD_REV (before issue 16 extended it), built
# against today's library with the same flags, and its seed corpus of then:
# the peer of `make fuzz-compare` (needs the git history).
FUZZ_OLD_REV ?= b95ed94^
FUZZ_OLD_DIR := $(BUILD)/fuzz-old
FUZZ_OLD_BIN := $(FUZZ_OLD_DIR)/fuzz_ccvm

$(FUZZ_OLD_BIN): $(LIB)
	$(call msg,LD,$@ ($(FUZZ_OLD_REV)))
	$(Q)rm -rf $(FUZZ_OLD_DIR) && mkdir -p $(FUZZ_OLD_DIR)/seeds
	$(Q)git show '$(FUZZ_OLD_REV):tests/fuzz_ccvm.c' > $(FUZZ_OLD_DIR)/fuzz_ccvm.c
	$(Q)git archive '$(FUZZ_OLD_REV)' $(FUZZ_CORPUS) | \
		tar -x -C $(FUZZ_OLD_DIR)/seeds --strip-components=2
	$(Q)$(CC) $(CFLAGS) -Ilib $(if $(filter 1,$(LIBFUZZER)),-DCCVM_FUZZ_LIBFUZZER -fsanitize=fuzzer) \
		$(LDFLAGS) -o $@ $(FUZZ_OLD_DIR)/fuzz_ccvm.c $(LIB) $(LDLIBS)

FUZZ_MAKE = $(MAKE) --no-print-directory CC=$(FUZZ_CC) SAN=asan,ubsan BUILD=$(FUZZ_BUILD) \
	LIBFUZZER=1 CFLAGS="-O1 -g -Wall -Wextra -fsanitize=fuzzer-no-link"

.PHONY: fuzz fuzz-smoke fuzz-run fuzz-replay fuzz-seeds fuzz-compare fuzz-compare-bins
fuzz:
	$(Q)$(FUZZ_MAKE) fuzz-run

# `make fuzz-compare`: this harness and the one of FUZZ_OLD_REV, each from
# its own seed corpus and an empty work corpus, same seed, same options,
# FUZZ_COMPARE_SECONDS each, side by side (FUZZ_COMPARE_MODE=serial: one
# after the other); prints both coverage counts and their ratio.
FUZZ_COMPARE_SECONDS ?= 600
FUZZ_COMPARE_MODE ?= concurrent
# libFuzzer's counters include each harness's own code; the library's share
# is measured apart: both corpora are replayed by replay builds with clang's
# source coverage (in $(FUZZ_COV_BUILD)), and llvm-cov counts the regions of
# lib/ and backends/ they reach.
FUZZ_COV_BUILD ?= build/fuzz-cov
fuzz-compare:
	$(Q)$(FUZZ_MAKE) fuzz-compare-bins
	$(Q)$(MAKE) --no-print-directory CC=$(FUZZ_CC) SAN= BUILD=$(FUZZ_COV_BUILD) LIBFUZZER= \
		CFLAGS="-O1 -g -Wall -Wextra -fprofile-instr-generate -fcoverage-mapping" \
		LDFLAGS=-fprofile-instr-generate fuzz-compare-bins
	$(Q)scripts/fuzz-compare.sh --seconds $(FUZZ_COMPARE_SECONDS) --seed $(FUZZ_SEED) \
		--mode $(FUZZ_COMPARE_MODE) --out $(FUZZ_BUILD)/compare \
		--new $(FUZZ_BUILD)/tests/fuzz_ccvm --new-seeds $(FUZZ_CORPUS) \
		--old $(FUZZ_BUILD)/fuzz-old/fuzz_ccvm --old-seeds $(FUZZ_BUILD)/fuzz-old/seeds \
		--cov-new $(FUZZ_COV_BUILD)/tests/fuzz_ccvm \
		--cov-old $(FUZZ_COV_BUILD)/fuzz-old/fuzz_ccvm \
		--old-name '$(FUZZ_OLD_REV)' -- $(FUZZ_OPTIONS)

fuzz-compare-bins: $(FUZZ_BIN) $(FUZZ_OLD_BIN)

fuzz-smoke:
	$(Q)$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS)

# The run's log goes to $(BUILD)/fuzz.log; its last line says how many
# coverage counters (libFuzzer's "cov:") the run reached.
fuzz-run: $(FUZZ_BIN)
	$(Q)mkdir -p $(BUILD)/corpus
	$(call msg,FUZZ,$(FUZZ_BIN) for $(FUZZ_SECONDS) s)
	@echo "fuzz: corpus $(FUZZ_CORPUS) ($$(ls $(FUZZ_CORPUS) | wc -l) seeds) and" \
		"$(BUILD)/corpus ($$(ls $(BUILD)/corpus | wc -l) inputs of earlier runs)"
	$(Q){ $(CHECK_ENV) $(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -seed=$(FUZZ_SEED) \
		-artifact_prefix=$(BUILD)/ $(FUZZ_OPTIONS) $(BUILD)/corpus $(FUZZ_CORPUS); \
		echo $$? > $(BUILD)/fuzz.status; } 2>&1 | tee $(BUILD)/fuzz.log; \
	cov=$$(grep -a -o 'cov: [0-9]*' $(BUILD)/fuzz.log | tail -1 | cut -d' ' -f2); \
	echo "fuzz: coverage $${cov:-?} counters after $(FUZZ_SECONDS) s (seed $(FUZZ_SEED))"; \
	exit $$(cat $(BUILD)/fuzz.status)

fuzz-replay: $(FUZZ_BIN)
	$(call msg,REPLAY,$(FUZZ_CORPUS))
	$(Q)$(CHECK_ENV) $(FUZZ_BIN) $(FUZZ_CORPUS)

fuzz-seeds: $(FUZZ_BIN)
	$(Q)mkdir -p $(FUZZ_CORPUS)
	$(Q)$(FUZZ_BIN) --write-seeds $(FUZZ_CORPUS)

# ---------------------------------------------------------------------------
# Examples and benchmarks
# ---------------------------------------------------------------------------

# `make run`: the tour, then minihv and minihv_inplace, on every built backend.  `make
# examples-run` (ci-examples): every example, each on every backend it takes.
.PHONY: run examples-run
run: $(BUILD)/examples/tour $(BUILD)/examples/minihv $(BUILD)/examples/minihv_inplace
	$(Q)set -e; [ -n "$(RUN_BACKENDS)" ] || { echo "make run: no backend is built" >&2; exit 1; }; \
	for b in $(RUN_BACKENDS); do \
		echo "==> $(BUILD)/examples/tour $$b"; \
		$(BUILD)/examples/tour $$b; \
	done; \
	for b in $(RUN_BACKENDS); do \
		echo "==> $(BUILD)/examples/minihv --backend $$b"; \
		$(BUILD)/examples/minihv --backend $$b; \
		echo "==> $(BUILD)/examples/minihv_inplace --backend $$b"; \
		$(BUILD)/examples/minihv_inplace --backend $$b; \
	done

examples-run: $(EXAMPLE_BINS) run
	$(Q)set -e; \
	echo "==> $(BUILD)/examples/backend"; $(BUILD)/examples/backend; \
	echo "==> $(BUILD)/examples/teardown"; $(BUILD)/examples/teardown; \
	echo "==> $(BUILD)/examples/contention"; $(BUILD)/examples/contention; \
	for b in $(RUN_BACKENDS); do \
		echo "==> $(BUILD)/examples/trace --backend $$b --out $(BUILD)/trace-$$b.json"; \
		$(BUILD)/examples/trace --backend $$b --out $(BUILD)/trace-$$b.json; \
	done

# Benchmarks get their own optimised, sanitizer-free build directory.
.PHONY: bench bench-build bench-bins bench-run
bench:
	$(Q)$(MAKE) --no-print-directory SAN= BUILD=build/bench BENCH_BUILD=1 bench-run

bench-build:
	$(Q)$(MAKE) --no-print-directory SAN= BUILD=build/bench BENCH_BUILD=1 bench-bins

bench-bins: $(BENCH_BINS)

# Every program runs even if one fails; the run fails after the table if
# any did.  Output goes through a pipe: stdbuf keeps it line by line.
BENCH_LOG = $(BUILD)/bench/bench.log
bench-run: $(BENCH_BINS)
	$(Q)log=$(BENCH_LOG); : > $$log; status=0; \
	buf=$$(command -v stdbuf >/dev/null && echo "stdbuf -oL"); \
	for b in $(BENCH_BINS); do \
		echo "==> $$b" | tee -a $$log; \
		{ $$buf $$b 2>&1; echo $$? > $$log.rc; } | tee -a $$log; \
		rc=$$(cat $$log.rc); \
		[ "$$rc" = 0 ] || { echo "==> $$b: exit status $$rc" | tee -a $$log; status=1; }; \
	done; \
	rm -f $$log.rc; \
	awk -F'|' -f bench/summary.awk $$log; \
	exit $$status

$(BENCH_BINS:=.o): | bench-deps

# ---------------------------------------------------------------------------
# Studies: `make seeds` builds the study programs optimised (build/seeds),
# runs each with its CSV under build/seeds/studies/, draws
# docs/studies/<name>.svg from it with studies/<name>.gp (gnuplot,
# installed as Check is when missing), and ends with one summary table of
# the SEED|thread|policy|outcome|figure lines every study prints.  It fails
# if a study fails or reports an outcome other than the expected one.
# ---------------------------------------------------------------------------

.PHONY: seeds seeds-run seeds-deps
seeds:
	$(Q)$(MAKE) --no-print-directory SAN= BUILD=build/seeds BENCH_BUILD=1 \
		SEEDS_START=$$(date +%s) seeds-run

seeds-deps:
	$(call need,gnuplot,command -v gnuplot,gnuplot-nox)

# The longest study runs beside the others (two at a time, as -j2); the
# outputs are printed in STUDIES order once all are done.
SEEDS_BESIDE ?= study_002
SEEDS_LOG = $(BUILD)/studies/seeds.log
seeds-run: $(STUDY_BINS) | seeds-deps
	$(Q)log=$(SEEDS_LOG); d=$(BUILD)/studies; : > $$log; status=0; start=$$(date +%s); \
	seeds_study() { $(BUILD)/studies/$$1 --csv $$d/$$1.csv > $$d/$$1.out 2>&1; \
		echo $$? > $$d/$$1.rc; }; \
	pid=; for s in $(filter $(SEEDS_BESIDE),$(STUDIES)); do \
		seeds_study $$s & pid="$$pid $$!"; \
	done; \
	for s in $(filter-out $(SEEDS_BESIDE),$(STUDIES)); do seeds_study $$s; done; \
	[ -z "$$pid" ] || wait $$pid; \
	for s in $(STUDIES); do \
		echo "==> $$s" | tee -a $$log; \
		tee -a $$log < $$d/$$s.out; \
		rc=$$(cat $$d/$$s.rc); rm -f $$d/$$s.rc $$d/$$s.out; \
		[ "$$rc" = 0 ] || { echo "==> $$s: exit status $$rc" | tee -a $$log; status=1; }; \
		if [ -f studies/$$s.gp ]; then \
			gnuplot -e "csv='$$d/$$s.csv'; out='docs/studies/$$s.svg'" \
				studies/$$s.gp || status=1; \
			echo "  PLOT    docs/studies/$$s.svg"; \
		fi; \
	done; \
	awk -F'|' -f studies/summary.awk $$log; \
	now=$$(date +%s); \
	echo "make seeds: $(if $(SEEDS_START),$$((now - $(SEEDS_START))) s with the build$(comma) )$$((now - start)) s running the studies"; \
	grep -q '^SEED|.*|UNEXPECTED|' $$log && status=1; \
	exit $$status

# ---------------------------------------------------------------------------
# Schedule exploration: `make explore` runs every built-in scenario of the
# explorer (ccvm-explore --list) on every backend it supports, EXPLORE_RUNS
# random schedules then EXPLORE_RUNS PCT schedules (depth 3) from
# EXPLORE_SEED; it fails at the first failing schedule, whose report and
# replay token are printed.  EXPLORE_SHARD=i/n runs one shard of it.
# ---------------------------------------------------------------------------

EXPLORE_RUNS ?= 100
EXPLORE_SEED ?= 1
EXPLORE_SHARD ?= 0/1
EXPLORE_BIN = $(BUILD)/tools/ccvm-explore

.PHONY: explore
explore: $(EXPLORE_BIN)
	$(Q)set -e; start=$$(date +%s); n=0; \
	pairs=$$($(EXPLORE_BIN) --list | awk '/^[^ ]/ { gsub(/[][]/, ""); \
		for (i = 2; i <= NF; i++) print $$1 "@" $$i }'); \
	for pair in $$pairs; do \
		sc=$${pair%@*}; be=$${pair#*@}; \
		for st in random pct; do \
			$(EXPLORE_BIN) $$sc --backend $$be --strategy $$st --runs $(EXPLORE_RUNS) \
				--seed $(EXPLORE_SEED) --shard $(EXPLORE_SHARD); \
			n=$$((n + 1)); \
		done; \
	done; \
	echo "make explore: $$n sweeps, no failing schedule, $$(($$(date +%s) - start)) s"

# `make explore-dfs` runs the systematic searches to exhaustion on every
# backend: DFS over the 2-vCPU conv-fault (two writes, a round-trip
# conversion) and conv-fault-2 (one write per vCPU, one conversion) with
# preemption bound EXPLORE_DFS_BOUND (default 1, about a minute; 2 takes
# about an hour, docs/scheduler.md 4.3), and over the 1-vCPU conv-fault-1
# with bound 2, printing the number of distinct schedules of each.
EXPLORE_DFS_BOUND ?= 1

.PHONY: explore-dfs
explore-dfs: $(EXPLORE_BIN)
	$(Q)set -e; start=$$(date +%s); \
	for be in mock tdx snp; do \
		for sc in conv-fault conv-fault-2; do \
			$(EXPLORE_BIN) $$sc --backend $$be --strategy dfs \
				--bound $(EXPLORE_DFS_BOUND) --quiet; \
		done; \
		$(EXPLORE_BIN) conv-fault-1 --backend $$be --strategy dfs --bound 2 --quiet; \
	done; \
	echo "make explore-dfs: 9 searches exhausted, no failing schedule, $$(($$(date +%s) - start)) s"

# ---------------------------------------------------------------------------
# Man pages: $(BUILD)/man/man3 holds one page per public call, generated
# from the header comments, and the hand-written overviews.  `make
# check-man` (part of `make check`) insists that every CCVM_API declaration
# has a comment with Context: and Return:, lints every page with mandoc,
# checks that every exported function has a page, and compiles the EXAMPLE
# of every page with -Werror (each distinct one once, all in one compiler
# run; #line points an error at the header comment it comes from), then
# links and runs those with a main() (with $(SAN_CFLAGS) under SAN=).
# ---------------------------------------------------------------------------

MAN_DIR := $(BUILD)/man/man3
MAN_DATE := $(shell git log -1 --format=%cs 2>/dev/null || date +%F)

.PHONY: man check-man
man: $(MAN_DIR)/.stamp

$(MAN_DIR)/.stamp: scripts/gen-man.py $(PUBLIC_HEADERS) $(MAN_PAGES)
	$(call msg,MAN,$(MAN_DIR))
	$(Q)rm -rf $(MAN_DIR) && mkdir -p $(MAN_DIR)
	$(Q)python3 scripts/gen-man.py --out $(MAN_DIR) --version $(VERSION) \
		--date $(MAN_DATE) $(PUBLIC_HEADERS) >/dev/null
	$(Q)cp $(MAN_PAGES) $(MAN_DIR)/
	$(Q)touch $@

check-man: $(MAN_DIR)/.stamp $(LIB) | man-deps
	$(Q)python3 scripts/gen-man.py --check $(PUBLIC_HEADERS)
	$(Q)cd $(MAN_DIR)/.. && mandoc -Tlint -W warning man3/*.3
	$(Q)missing=$$(python3 scripts/api-symbols.py $(PUBLIC_HEADERS) | \
		while read f; do [ -f $(MAN_DIR)/$$f.3 ] || echo $$f; done); \
	[ -z "$$missing" ] || { echo "error: no man page for: $$missing" >&2; exit 1; }
	$(Q)set -e; ex=$(BUILD)/man/examples; rm -rf $$ex; mkdir -p $$ex; \
	srcs=$$(python3 scripts/gen-man.py --extract $$ex $(MAN_DIR)/*.3); \
	cd $$ex && $(CC) -std=c11 -Wall -Wextra -Werror -I$(CURDIR)/include $(SAN_CFLAGS) -c $$srcs; \
	for src in $$(grep -l '^int main' $$srcs); do \
		$(CC) $(SAN_CFLAGS) -o $${src%.c} $${src%.c}.o $(abspath $(LIB)) -pthread; \
		./$${src%.c} > /dev/null || { echo "error: the EXAMPLE of $${src%.c}(3) failed" >&2; exit 1; }; \
	done; \
	echo "$$(echo $$srcs | wc -w) examples: $$(grep -l '^int main' $$srcs | wc -l) programs run" > ../examples.txt
	$(Q)printf '  %-7s %s\n' MAN "$$(ls $(MAN_DIR)/*.3 | wc -l) pages in $(MAN_DIR): mandoc -Tlint clean, every public call has one; $$(cat $(BUILD)/man/examples.txt)"

# ---------------------------------------------------------------------------
# Traces: examples/trace writes a Perfetto / Chrome JSON trace of two vCPUs
# on each backend, on the wall and the simulated clock, with a category
# filter and with a size bound, and scripts/check-trace.py checks each
# file against the format and the writer's promises (named lanes, one per
# vCPU; one spelling per event; the bound).  Part of `make check`.
# ---------------------------------------------------------------------------

.PHONY: check-trace
check-trace: $(BUILD)/examples/trace
	$(Q)set -e; t=$(BUILD)/traces; mkdir -p $$t; \
	for b in $(RUN_BACKENDS); do \
		$(BUILD)/examples/trace --backend $$b --out $$t/$$b.json > /dev/null; \
		python3 scripts/check-trace.py --vcpus 2 --clock wall $$t/$$b.json; \
	done; \
	$(BUILD)/examples/trace --clock sim --out $$t/sim.json > /dev/null; \
	python3 scripts/check-trace.py --vcpus 2 --clock sim $$t/sim.json; \
	$(BUILD)/examples/trace --only op,exit --out $$t/only.json > /dev/null; \
	python3 scripts/check-trace.py --vcpus 2 --only op,exit $$t/only.json; \
	$(BUILD)/examples/trace --max-bytes 20000 --out $$t/bounded.json > /dev/null; \
	python3 scripts/check-trace.py --max-bytes 20000 $$t/bounded.json

# ---------------------------------------------------------------------------
# Install
# ---------------------------------------------------------------------------

.PHONY: install uninstall
install: $(LIB) $(SO) $(PC) $(MAN_DIR)/.stamp
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(INCLUDEDIR)/ccvm $(DESTDIR)$(MANDIR)/man3
	$(INSTALL) -m 644 $(MAN_DIR)/*.3 $(DESTDIR)$(MANDIR)/man3/
	$(INSTALL) -m 644 $(LIB) $(DESTDIR)$(LIBDIR)/libccvm.a
	$(INSTALL) -m 755 $(SO) $(DESTDIR)$(LIBDIR)/$(notdir $(SO))
	ln -sf $(notdir $(SO)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libccvm.so
	$(INSTALL) -m 644 $(PC) $(DESTDIR)$(PKGCONFIGDIR)/ccvm.pc
	$(INSTALL) -m 644 $(PUBLIC_HEADERS) $(DESTDIR)$(INCLUDEDIR)/ccvm/

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libccvm.a $(DESTDIR)$(PKGCONFIGDIR)/ccvm.pc
	rm -f $(DESTDIR)$(LIBDIR)/$(notdir $(SO)) $(DESTDIR)$(LIBDIR)/$(SONAME) \
		$(DESTDIR)$(LIBDIR)/libccvm.so
	rm -f $(PUBLIC_HEADERS:include/ccvm/%=$(DESTDIR)$(INCLUDEDIR)/ccvm/%)
	rmdir $(DESTDIR)$(INCLUDEDIR)/ccvm 2>/dev/null || true
	for f in $$(python3 scripts/api-symbols.py $(PUBLIC_HEADERS)) $(notdir $(MAN_PAGES:.3=)); do \
		rm -f $(DESTDIR)$(MANDIR)/man3/$$f.3; done

# ---------------------------------------------------------------------------
# Audits (each is one step of `make ci`, usable alone)
# ---------------------------------------------------------------------------

# Every source in the tree is in a list, and every suite is in tests/main.c.
LISTED := $(PUBLIC_HEADERS) $(LIB_SRCS) $(BACKEND_SRCS) $(TEST_SRCS) $(FUZZ_SRCS) \
	tests/main.c tests/consumer.c $(EXAMPLES:%=examples/%.c) $(TOOLS:%=tools/%.c) \
	$(BENCHES:%=bench/%.c) $(STUDY_LIB_SRCS) $(STUDIES:%=studies/%.c) $(MAN_PAGES)
UNLISTED := $(filter-out $(LISTED),$(wildcard include/ccvm/*.h lib/*.c \
	backends/*/*.c tests/*.c examples/*.c tools/*.c bench/*.c studies/*.c man/man3/*.3))

.PHONY: check-lists
check-lists:
	$(Q)bad=0; \
	for f in $(UNLISTED); do \
		echo "$$f: not listed in the Makefile" >&2; bad=1; \
	done; \
	for f in $(TEST_SRCS); do \
		for s in $$(sed -n 's/^Suite \*\([A-Za-z0-9_]*\)_suite(void).*/\1/p' $$f); do \
			grep -q "SUITE($$s)" tests/main.c || { \
				echo "$$f: $${s}_suite is not in tests/main.c" >&2; bad=1; }; \
		done; \
	done; \
	[ $$bad = 0 ] && echo "  LISTS   every source and suite is listed"

# The sealed backend boundary: no file under backends/, and not
# tests/conformance.h (the fixtures an out-of-tree backend's author runs),
# may include a private header of the core (lib/*.h), directly or through
# another header, by any path.  The preprocessor lists what each file really
# pulls in; -Ilib is given so that a reach for lib/ resolves and is reported
# here, rather than only failing to compile.
BOUNDARY_FILES := $(BACKEND_SRCS) $(sort $(wildcard backends/*/*.h)) tests/conformance.h

.PHONY: check-boundary
check-boundary: | check-deps
	$(Q)bad=0; for f in $(BOUNDARY_FILES); do \
		deps=$$($(CC) -std=c11 -D_GNU_SOURCE -Iinclude -Ilib $(CHECK_CFLAGS) \
			-MM -MT x -x c $$f) || \
			{ echo "$$f: cannot list its includes" >&2; bad=1; continue; }; \
		for d in $$(printf '%s\n' "$$deps" | tr -d '\\' | sed 's/^x://'); do \
			case $$(realpath -m --relative-to=. "$$d") in lib/*) \
				echo "$$f: includes $$d, a private header of the core;" \
					"only <ccvm/ccvm.h> and <ccvm/backend.h> are the core's to include here" >&2; \
				bad=1;; \
			esac; \
		done; \
	done; \
	[ $$bad = 0 ] && printf '  %-7s %s\n' BOUNDARY \
		"$(words $(BOUNDARY_FILES)) files (backends/, tests/conformance.h): public headers only"

# Each public header compiles alone, as C11 and as C++, included twice (its
# guard works).  No -D_GNU_SOURCE: users may not define it.
HDRCHECK_CC ?= gcc clang
HDRCHECK_CXX ?= g++ clang++

.PHONY: check-headers
check-headers:
	$(Q)set -e; for h in $(PUBLIC_HEADERS:include/%=%); do \
		for cc in $(HDRCHECK_CC); do \
			printf '  %-7s %s\n' HDR "$$h ($$cc, C11)"; \
			printf '#include <%s>\n#include <%s>\n' $$h $$h | \
				$$cc -std=c11 -Wall -Wextra -Werror -Iinclude \
				-x c -c -o /dev/null -; \
		done; \
		for cxx in $(HDRCHECK_CXX); do \
			printf '  %-7s %s\n' HDR "$$h ($$cxx, C++17)"; \
			printf '#include <%s>\n#include <%s>\n' $$h $$h | \
				$$cxx -std=c++17 -Wall -Wextra -Werror -Iinclude \
				-x c++ -c -o /dev/null -; \
		done; \
	done

# Every external symbol libccvm.a defines starts with ccvm_ (an application's
# function of the same name would silently replace it in a static link) and
# has no double underscore.
.PHONY: check-symbols
check-symbols: $(LIB)
	$(Q)bad=$$($(NM) -A -P -g --defined-only $(LIB) | \
		awk '$$2 !~ /^ccvm_/ || $$2 ~ /__/ { print "  " $$1 " " $$2 " (" $$3 ")" }'); \
	if [ -n "$$bad" ]; then \
		echo "error: symbols in $(LIB) not named ccvm_* or with a double underscore:" >&2; \
		echo "$$bad" >&2; exit 1; \
	fi; \
	printf '  %-7s %s\n' NM "$(LIB): $$($(NM) -P -g --defined-only $(LIB) | \
		grep -c ' [A-Za-z] ' || true) global symbols, all ccvm_"

# libccvm.so exports exactly the functions the public headers mark
# CCVM_API, all in a version node, and every file-scope function a public
# header declares is so marked (scripts/api-symbols.py reads the headers).
.PHONY: check-exports
check-exports: $(SO)
	$(Q)set -e; tmp=$(BUILD)/exports; \
	python3 scripts/api-symbols.py --unmarked $(PUBLIC_HEADERS) > $$tmp.unmarked; \
	if [ -s $$tmp.unmarked ]; then \
		echo "error: public declarations without CCVM_API:" >&2; \
		cat $$tmp.unmarked >&2; exit 1; \
	fi; \
	python3 scripts/api-symbols.py $(PUBLIC_HEADERS) > $$tmp.declared; \
	$(NM) -D --defined-only $(SO) | awk '$$2 != "A" { print $$3 }' | \
		sed 's/@.*//' | sort -u > $$tmp.exported; \
	if ! cmp -s $$tmp.declared $$tmp.exported; then \
		echo "error: $(SO) exports differ from the CCVM_API declarations" \
			"(< declared only, > exported only):" >&2; \
		diff $$tmp.declared $$tmp.exported | grep '^[<>]' >&2; exit 1; \
	fi; \
	unversioned=$$(objdump -T $(SO) | awk '$$4 == ".text" && $$(NF-1) !~ /CCVM_/' | wc -l); \
	[ $$unversioned = 0 ] || { echo "error: $$unversioned exports without a CCVM_ version" >&2; exit 1; }; \
	printf '  %-7s %s\n' EXPORTS "$(notdir $(SO)): $$(wc -l < $$tmp.exported) functions, the CCVM_API set of $(words $(PUBLIC_HEADERS)) headers, versioned"

# Install into a staging root, build tests/consumer.c from it through
# pkg-config alone (no -Iinclude), run it, then check that uninstall
# removes every installed file.
STAGE = $(abspath $(BUILD)/stage)
STAGE_PC_ENV = PKG_CONFIG_LIBDIR=$(STAGE)/usr/lib/pkgconfig \
	PKG_CONFIG_SYSROOT_DIR=$(STAGE) \
	PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1

.PHONY: check-install
check-install: $(LIB)
	$(Q)rm -rf $(STAGE)
	$(Q)$(MAKE) --no-print-directory install DESTDIR=$(STAGE) PREFIX=/usr \
		LIBDIR=/usr/lib INCLUDEDIR=/usr/include PKGCONFIGDIR=/usr/lib/pkgconfig
	$(Q)set -e; for mode in shared static; do \
		if [ $$mode = shared ]; then \
			flags=$$($(STAGE_PC_ENV) $(PKG_CONFIG) --cflags --libs ccvm); \
			desc="pkg-config --cflags --libs ccvm"; \
		else \
			flags=$$($(STAGE_PC_ENV) $(PKG_CONFIG) --cflags --libs --static ccvm | \
				sed 's/-lccvm/-l:libccvm.a/'); \
			desc="pkg-config --cflags --libs --static ccvm, -lccvm as -l:libccvm.a"; \
		fi; \
		printf '  %-7s %s\n' CONSUME "$$mode: $$desc: $$flags"; \
		$(CC) -std=c11 -Wall -Wextra -Werror -o $(BUILD)/consumer-$$mode \
			tests/consumer.c $$flags; \
		needed=$$(readelf -d $(BUILD)/consumer-$$mode | grep -c 'NEEDED.*\[$(SONAME)\]' || true); \
		case $$mode$$needed in shared1|static0) ;; *) \
			echo "error: $$mode consumer: $$needed NEEDED entries for $(SONAME)" >&2; exit 1;; \
		esac; \
		out=$$(LD_LIBRARY_PATH=$(STAGE)/usr/lib $(BUILD)/consumer-$$mode); \
		[ "$$out" = "consumer ok" ] || { \
			echo "error: $$mode consumer printed '$$out'" >&2; exit 1; }; \
	done
	$(Q)n=$$(ls $(STAGE)/usr/share/man/man3/*.3 | wc -l); \
	MANPATH=$(STAGE)/usr/share/man man -w ccvm_vcpu_run >/dev/null && \
	MANPATH=$(STAGE)/usr/share/man man -w libccvm >/dev/null || { \
		echo "error: man cannot find the installed pages" >&2; exit 1; }; \
	printf '  %-7s %s\n' MAN "$$n pages installed, found by man(1)"
	$(Q)$(MAKE) --no-print-directory uninstall DESTDIR=$(STAGE) PREFIX=/usr \
		LIBDIR=/usr/lib INCLUDEDIR=/usr/include PKGCONFIGDIR=/usr/lib/pkgconfig
	$(Q)left=$$(find $(STAGE) -type f); [ -z "$$left" ] || { \
		echo "error: uninstall left files behind:" >&2; echo "$$left" >&2; exit 1; }
	$(Q)echo "  STAGE   install, consumer and uninstall ok"

# ---------------------------------------------------------------------------
# CI: every step in order, each with a header line and its time.  Each step
# pins its compiler, sanitizers and build directory.  (Recursive calls spell
# $(MAKE) out so that make hands them its jobserver.)
# ---------------------------------------------------------------------------

CI_STEPS := ci-lists ci-boundary ci-gcc ci-clang ci-check ci-explore ci-examples ci-asan-ubsan ci-headers \
	ci-symbols ci-exports ci-install ci-tsan ci-fuzz-replay ci-fuzz-smoke

.PHONY: ci $(CI_STEPS)
ci:
	$(Q)set -e; n=0; total=$$(date +%s); for step in $(CI_STEPS); do \
		n=$$((n + 1)); start=$$(date +%s); \
		echo "=== ci [$$n/$(words $(CI_STEPS))] $$step"; \
		$(MAKE) --no-print-directory $$step; \
		echo "=== ci [$$n/$(words $(CI_STEPS))] $$step: ok, $$(($$(date +%s) - start))s"; \
	done; \
	echo "=== ci: all $(words $(CI_STEPS)) steps ok, $$(($$(date +%s) - total))s"

ci-lists:
	@echo "--- every source file and suite listed"
	$(Q)$(MAKE) --no-print-directory check-lists

ci-boundary:
	@echo "--- backends and conformance.h include no private header of the core"
	$(Q)$(MAKE) --no-print-directory check-boundary

ci-gcc:
	@echo "--- gcc build, WERROR=1"
	$(Q)$(MAKE) --no-print-directory WERROR=1 CC=gcc SAN= BUILD=build/plain all

ci-clang:
	@echo "--- clang build, WERROR=1"
	$(Q)$(MAKE) --no-print-directory WERROR=1 CC=clang SAN= BUILD=build/clang all

ci-check:
	@echo "--- make check (gcc, no sanitizer)"
	$(Q)$(MAKE) --no-print-directory WERROR=1 CC=gcc SAN= BUILD=build/plain check

ci-explore:
	@echo "--- make explore: every built-in scenario on every backend, random and PCT"
	$(Q)$(MAKE) --no-print-directory WERROR=1 CC=gcc SAN= BUILD=build/plain explore

ci-asan-ubsan:
	@echo "--- make check under AddressSanitizer + UndefinedBehaviorSanitizer"
	$(Q)$(MAKE) --no-print-directory WERROR=1 CC=gcc SAN=asan,ubsan BUILD=build/asan-ubsan check

ci-headers:
	@echo "--- public headers compile alone as C11 and C++17"
	$(Q)$(MAKE) --no-print-directory check-headers

ci-symbols:
	@echo "--- nm: every global symbol of libccvm.a starts with ccvm_"
	$(Q)$(MAKE) --no-print-directory WERROR=1 CC=gcc SAN= BUILD=build/plain check-symbols

ci-examples:
	@echo "--- every example, on every backend it takes (make examples-run)"
	$(Q)$(MAKE) --no-print-directory WERROR=1 CC=gcc SAN= BUILD=build/plain examples-run

ci-exports:
	@echo "--- libccvm.so exports exactly the CCVM_API declarations"
	$(Q)$(MAKE) --no-print-directory WERROR=1 CC=gcc SAN= BUILD=build/plain check-exports

ci-install:
	@echo "--- staged install, pkg-config consumer, uninstall"
	$(Q)$(MAKE) --no-print-directory WERROR=1 CC=gcc SAN= BUILD=build/plain check-install

ci-tsan:
	@echo "--- ThreadSanitizer run of the Check suites: $(or $(TSAN_SUITES),none)"
	$(Q)$(if $(strip $(TSAN_SUITES)), \
		$(MAKE) --no-print-directory WERROR=1 CC=clang SAN=tsan BUILD=build/tsan-clang check CHECK_SUITES="$(TSAN_SUITES)", \
		echo "  skipped: TSAN_SUITES is empty")

ci-fuzz-replay:
	@echo "--- differential fuzzer: replay the seed corpus (gcc, ASan + UBSan)"
	$(Q)$(MAKE) --no-print-directory WERROR=1 CC=gcc SAN=asan,ubsan BUILD=build/asan-ubsan fuzz-replay

ci-fuzz-smoke:
	@echo "--- differential fuzzer: libFuzzer for $(FUZZ_SMOKE_SECONDS) s (clang)"
	$(Q)$(MAKE) --no-print-directory WERROR=1 fuzz-smoke

# ---------------------------------------------------------------------------

.PHONY: clean
clean:
	rm -rf build

.PHONY: help
help:
	@printf '%-22s %-64s %-14s %s\n' target 'what it does' needs 'time here'
	@printf '%-22s %-64s %-14s %s\n' 'make' 'libccvm.a, libccvm.so, ccvm.pc, examples, studies in $$(BUILD)' 'compiler' '40 s'
	@printf '%-22s %-64s %-14s %s\n' 'make check' 'audits and every Check suite (CK_RUN_SUITE/CK_RUN_CASE select)' 'check, mandoc*' '5 min'
	@printf '%-22s %-64s %-14s %s\n' 'make check-build' 'build the tests only' 'check*' '1 min'
	@printf '%-22s %-64s %-14s %s\n' 'make SAN=... check' 'the same under asan,ubsan or tsan, each in its own build dir' '-' '15 min'
	@printf '%-22s %-64s %-14s %s\n' 'make run' 'examples tour and minihv(_inplace) on every backend' '-' '1 min'
	@printf '%-22s %-64s %-14s %s\n' 'make examples-run' 'every example, on every backend it takes' '-' '1 min'
	@printf '%-22s %-64s %-14s %s\n' 'make bench' '(-O2, no sanitizers) the benchmarks, ours beside a named peer' 'libjudy-dev*' '20+ min'
	@printf '%-22s %-64s %-14s %s\n' 'make explore' 'every built-in scenario x backend, random and PCT schedules' '-' '1 min'
	@printf '%-22s %-64s %-14s %s\n' 'make seeds' 'the studies of the source threads, plots in docs/studies/' 'gnuplot*' '1 min'
	@printf '%-22s %-64s %-14s %s\n' 'make fuzz' 'libFuzzer on every backend for FUZZ_SECONDS; fuzz-smoke: short' 'clang' 'FUZZ_SECONDS'
	@printf '%-22s %-64s %-14s %s\n' 'make fuzz-replay' 'replay tests/fuzz-corpus (plain harness); fuzz-seeds rewrites it' '-' '1 min'
	@printf '%-22s %-64s %-14s %s\n' 'make fuzz-compare' 'this harness vs the one before issue 16, same seed' 'clang, git' '2 x 10 min CPU'
	@printf '%-22s %-64s %-14s %s\n' 'make man' 'man pages of every public call in $$(BUILD)/man/man3' 'python3' '1 s'
	@printf '%-22s %-64s %-14s %s\n' 'make check-man' 'lint pages; every EXAMPLE compiles, those with main() run' 'mandoc*' '15 s'
	@printf '%-22s %-64s %-14s %s\n' 'make check-trace' 'traces of examples/trace checked by scripts/check-trace.py' 'python3' '5 s'
	@printf '%-22s %-64s %-14s %s\n' 'make check-install' 'staged install; a pkg-config consumer, shared and static' 'pkg-config' '20 s'
	@printf '%-22s %-64s %-14s %s\n' 'make check-boundary' 'no backend (nor tests/conformance.h) includes a lib/ header' '-' '1 s'
	@printf '%-22s %-64s %-14s %s\n' 'make check-<audit>' 'single CI audits: lists, headers, symbols, exports' 'python3' '1-10 s'
	@printf '%-22s %-64s %-14s %s\n' 'make install' 'PREFIX LIBDIR INCLUDEDIR PKGCONFIGDIR MANDIR DESTDIR; uninstall' '-' '1 s'
	@printf '%-22s %-64s %-14s %s\n' 'make ci' 'everything CI runs (.ci/run runs make check, then make ci)' 'all above' '25 min'
	@echo '* installed with apt-get when missing (as root).  Times: 2 cores, idle.'
	@echo 'Variables: CC CFLAGS LDFLAGS LDLIBS WERROR=1 V=1 BUILD TSAN_SUITES CHECK_SUITES'
