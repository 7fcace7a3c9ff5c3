# ember - top-level recipes.  Each target wraps CMake; `make help` lists them.
#
#   make            build build/ember (the CLI) and build/libember.a (Release)
#   make test       build, then run every test (unit, NumPy reference, CLI)
#   make check      everything CI runs: test, asan, tsan and 30 s of fuzzing a target
#   make asan       AddressSanitizer + UBSan build in build-asan, unit tests
#   make tsan       ThreadSanitizer build in build-tsan (unit tests only), unit tests
#   make fuzz       libFuzzer targets (clang) in build-fuzz (targets only);
#                   FUZZ_SECONDS=30 each, FUZZ_JOBS=2 targets at a time
#   make deps       install the Debian packages building and running need (apt-get, root)
#   make test-deps  deps + the packages the test suite needs (clang, node, numpy, ...)
#   make clean      remove every build directory

BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
EMBER_TEST_DATA ?= $(abspath ../shared)
FUZZ_SECONDS ?= 30
FUZZ_JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all build test check asan tsan fuzz deps test-deps clean help

all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && EMBER_TEST_DATA=$(EMBER_TEST_DATA) ctest --output-on-failure -j $(JOBS)

check: test asan tsan fuzz

asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	  -DEMBER_SANITIZE=address,undefined >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && EMBER_TEST_DATA=$(EMBER_TEST_DATA) ASAN_OPTIONS=detect_leaks=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) -L unit

tsan:
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	  -DEMBER_SANITIZE=thread >/dev/null
	cmake --build build-tsan -j $(JOBS) --target unit_tests
	cd build-tsan && EMBER_TEST_DATA=$(EMBER_TEST_DATA) ctest --output-on-failure -j $(JOBS) -L unit

fuzz:
	cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	  -DEMBER_FUZZ=ON -DEMBER_WERROR=ON >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target fuzz_targets
	EMBER_TEST_DATA=$(EMBER_TEST_DATA) FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) bash tests/fuzz/run.sh build-fuzz

deps:
	bash scripts/install-deps.sh build

test-deps:
	bash scripts/install-deps.sh test

clean:
	rm -rf build build-asan build-tsan build-fuzz

help:
	@sed -n '1,15p' Makefile
