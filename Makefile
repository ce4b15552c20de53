# Top-level driver. `make run` builds and runs the tour; `make check` builds
# with ASan + UBSan and -Werror and runs every test through ctest.
#
# Builds are quiet: CMake's and make's output goes to build/<dir>.log and
# is printed whole only when the build fails. `make V=1 ...` shows it all.
JOBS ?= $(shell nproc)
CMAKE ?= cmake
REL := build/release
DBG := build/check
COV := build/coverage
VG := build/valgrind
TSAN := build/tsan
SRC_C := $(shell find src -name "*.c")
SRC_H := $(shell find src -name "*.h")
TOOLS_C := $(shell find tools -name "*.c")

.PHONY: all run check build bench lint format format-check coverage fuzz soak install \
    valgrind tsan clean

# $(call quietly,LOG,COMMANDS): runs the shell COMMANDS with all their
# output in LOG; if they fail, prints LOG and fails.
ifeq ($(V),1)
quietly = $(2)
else
quietly = mkdir -p build && { $(2); } >$(1) 2>&1 || \
    { cat $(1); echo "make: build failed; the output above is in $(1)" >&2; exit 1; }
endif

all: build

build:
	@$(call quietly,$(REL).log, \
	    $(CMAKE) -S . -B $(REL) -DCMAKE_BUILD_TYPE=Release -DMPROC_TESTS=OFF && \
	    $(CMAKE) --build $(REL) -j$(JOBS))

run: build
	@bash examples/tour.sh $(REL)/examples

# The benchmarks are built too (not run): a bench that no longer compiles
# against the headers fails here, not in a later make bench.
check:
	@$(call quietly,$(DBG).log, \
	    $(CMAKE) -S . -B $(DBG) -DCMAKE_BUILD_TYPE=Debug -DMPROC_SANITIZE=ON \
	        -DMPROC_WERROR=ON -DMPROC_BENCH=ON && \
	    $(CMAKE) --build $(DBG) -j$(JOBS))
	@cd $(DBG) && ctest --output-on-failure --timeout 900

# The test programs under valgrind's memcheck, every process of them (spawn
# and fork-server children, the fork server, the tracker), in a Debug build
# of their own without sanitizers: fails on any error memcheck reports
# (options and why in tests/CMakeLists.txt, suppressions with their reasons
# in tests/valgrind.supp). valgrind knows no pidfds, so this is also the
# pid-based path for real. Not in make check: minutes, not seconds.
valgrind:
	@command -v valgrind >/dev/null || \
	    { echo "make valgrind needs valgrind: apt-get install valgrind" >&2; exit 1; }
	@$(call quietly,$(VG).log, \
	    $(CMAKE) -S . -B $(VG) -DCMAKE_BUILD_TYPE=Debug -DMPROC_VALGRIND=ON \
	        -DMPROC_WERROR=ON -DMPROC_EXAMPLES=OFF -DMPROC_BENCH=OFF && \
	    $(CMAKE) --build $(VG) -j$(JOBS))
	@cd $(VG) && ctest --output-on-failure --timeout 3600

# The test programs built with ThreadSanitizer, in a build of their own;
# fails on any report (exit code 66). Cases TSan cannot follow are skipped
# there and say why (SKIP_UNDER_TSAN in tests/harness.h).
tsan:
	@$(call quietly,$(TSAN).log, \
	    $(CMAKE) -S . -B $(TSAN) -DCMAKE_BUILD_TYPE=Debug -DMPROC_TSAN=ON \
	        -DMPROC_WERROR=ON -DMPROC_EXAMPLES=OFF -DMPROC_BENCH=OFF && \
	    $(CMAKE) --build $(TSAN) -j$(JOBS))
	@cd $(TSAN) && ctest --output-on-failure --timeout 1800

# Line and branch coverage of src/ over the test suite: gcc --coverage in a
# build of its own made afresh (Debug, no sanitizers: no counters or notes
# of an earlier run or of a deleted source), ctest, then gcovr:
# a table of line coverage per file (least covered last) and the totals of
# lines and branches; branches per file in $(COV)/branches.txt, annotated
# sources in $(COV)/html/index.html. Fails when a test failed, after the
# report.
GCOVR = gcovr --root . --add-tracefile $(COV)/coverage.json
# libFuzzer targets (fuzz/), built with clang in a tree of their own, each
# replayed on its in-tree corpus and then fuzzed FUZZ_SECONDS seconds.
# `make check` runs the same for 3 seconds each (the fuzz_smoke test).
FUZZ_SECONDS ?= 600
fuzz:
	@bash tests/fuzz_smoke.sh $(CURDIR) $(CURDIR)/build/fuzz $(FUZZ_SECONDS)

# The chaos test (tests/test_chaos.c: random SIGKILLs of pool workers,
# queue producers and consumers, lock holders) for SOAK_SECONDS per part
# instead of the 2 s `make check` gives it.
SOAK_SECONDS ?= 300
soak:
	@$(call quietly,$(DBG).log, \
	    $(CMAKE) -S . -B $(DBG) -DCMAKE_BUILD_TYPE=Debug -DMPROC_SANITIZE=ON \
	        -DMPROC_WERROR=ON -DMPROC_BENCH=OFF && \
	    $(CMAKE) --build $(DBG) -j$(JOBS))
	@MPROC_CHAOS_SECONDS=$(SOAK_SECONDS) $(DBG)/tests/test_chaos

coverage:
	@command -v gcovr >/dev/null || \
	    { echo "make coverage needs gcovr: apt-get install gcovr" >&2; exit 1; }
	@rm -rf $(COV)
	@$(call quietly,$(COV).log, \
	    $(CMAKE) -S . -B $(COV) -DCMAKE_BUILD_TYPE=Debug -DMPROC_COVERAGE=ON \
	        -DMPROC_EXAMPLES=OFF -DMPROC_BENCH=OFF && \
	    $(CMAKE) --build $(COV) -j$(JOBS))
	@cd $(COV) && ctest --output-on-failure --timeout 900; rc=$$?; \
	    cd $(CURDIR) && mkdir -p $(COV)/html && \
	    gcovr --root . --filter src/ -j $(JOBS) --json $(COV)/coverage.json \
	        $(COV) && \
	    $(GCOVR) --sort-percentage --txt $(COV)/lines.txt \
	        --html-details $(COV)/html/index.html && \
	    $(GCOVR) --sort-percentage --branches --txt $(COV)/branches.txt \
	        --print-summary >$(COV)/summary.txt && \
	    sed -E 's/(%|Cover) +([0-9]|Missing).*$$/\1/' $(COV)/lines.txt && \
	    cat $(COV)/summary.txt && \
	    exit $$rc

# Every benchmark, its output kept in $(REL)/bench.log, then the charts
# (bench/plot.sh: PNGs under bench/plots/, gnuplot installed if missing).
bench: build
	@bash -c 'set -o pipefail; bash bench/run.sh $(REL) | tee $(REL)/bench.log'
	@bash bench/plot.sh $(REL) $(REL)/bench.log

# Silent when clean. clang-tidy prints "N warnings generated." for every
# file even with --quiet (warnings in system headers, suppressed): that line
# is dropped, the rest is shown, and the exit status is clang-tidy's.
lint:
	@$(CMAKE) -S . -B $(REL) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@clang-tidy -p $(REL) --quiet --warnings-as-errors='*' $(SRC_C) $(TOOLS_C) \
	    >$(REL)/clang-tidy.log 2>&1; rc=$$?; \
	    grep -vE '^[0-9]+ warnings? generated\.$$' $(REL)/clang-tidy.log; \
	    exit $$rc
	@cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --inline-suppr --suppress=missingIncludeSystem -D_GNU_SOURCE \
	    -I include -I src src/ tools/

FORMAT_FILES = $(SRC_C) $(SRC_H) $(TOOLS_C) include/*.h include/mproc/*.h \
    tests/*.c tests/*.h examples/*.c bench/*.c fuzz/*.c fuzz/*.h

format:
	clang-format -i $(FORMAT_FILES)

# The files `make format` rewrites, checked without rewriting: silent when
# they are formatted, each difference and a failure otherwise.
format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES)

# `make install PREFIX=/some/dir` installs there; without PREFIX, CMake's
# default prefix (/usr/local).
install: build
	$(CMAKE) --install $(REL) $(if $(PREFIX),--prefix "$(PREFIX)")

clean:
	rm -rf build
