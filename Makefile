# moeq: two entry points for a fresh Debian machine.
#   make demo   builds a Release binary set and runs the main job on the bundled model
#   make test   installs missing Debian packages, builds and runs the test suite
#   make llamacpp-deps  installs node/npm and the pinned llama.cpp (node-llama-cpp) of the
#                       conformance test (ctest -L llamacpp); `make test` does it too
#   make test-slurm     (root) installs slurm-wlm and munge, builds, and runs the opt-in Slurm
#                       test: examples/slurm/ on a one-node Slurm it starts and stops (ctest -L slurm)
# Other targets: test-sanitize (ASan+UBSan build and tests), test-tsan (determinism tests under
# ThreadSanitizer), fuzz / fuzz-run (libFuzzer targets, clang), bench, clean.

BUILD         ?= build
BUILD_RELEASE ?= build-release
JOBS          ?= $(shell nproc 2>/dev/null || echo 2)
SANITIZE      ?= OFF
BUILD_TYPE    ?= RelWithDebInfo
CMAKE_FLAGS   ?=
# CI (CI=true) treats compiler warnings as errors.
ifeq ($(CI),true)
override CMAKE_FLAGS += -DMOEQ_WERROR=ON
endif

FUZZ_BUILD    ?= build-fuzz
FUZZ_SECONDS  ?= 60
FUZZ_TARGETS  ?= safetensors_header gguf_reader config_adapter tokenizer_json sensitivity_jsonl allocation_json routing_trace token_ids
# Labels the sanitizer pass skips (tests too slow under ASan; they run in the plain pass).
SANITIZE_SKIP ?= slow

.PHONY: format all deps test-deps llamacpp-deps slurm-deps build test test-slurm test-sanitize test-tsan fuzz fuzz-run release demo bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DMOEQ_SANITIZE=$(SANITIZE) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# The report test renders HTML in Debian's chromium, the man pages need help2man, the GNU
# parallel example test needs parallel, format_check needs clang-format (each skips with a
# message without it).
test-deps: llamacpp-deps
	@scripts/install-deps.sh chromium help2man parallel clang-format

# The llama.cpp conformance test loads moeq's GGUF files in node-llama-cpp (prebuilt llama.cpp).
llamacpp-deps:
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || scripts/install-deps.sh nodejs npm
	@scripts/install-llamacpp.sh

test: test-deps build
	ctest --test-dir $(BUILD) --output-on-failure --no-tests=error -j $(JOBS)

# The opt-in Slurm test (tests/slurm/slurm_array_test.sh, docs/scale.md): as root, starts munged,
# slurmctld and slurmd from Debian's packages in a temporary directory, runs examples/slurm/'s
# job array and merge job on the bundled model, stops them. `make test` skips it (no MOEQ_SLURM_TEST).
slurm-deps:
	@scripts/install-deps.sh slurm-wlm munge

test-slurm: slurm-deps build
	MOEQ_SLURM_TEST=1 ctest --test-dir $(BUILD) -L slurm -V --no-tests=error

# ASan+UBSan, optimised (-O1) so the suite stays within CI's time; tests labelled slow are skipped.
test-sanitize: test-deps
	cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
	  -DMOEQ_SANITIZE=ON -DMOEQ_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build build-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir build-asan --output-on-failure --no-tests=error -j $(JOBS) -LE '$(SANITIZE_SKIP)'

# ThreadSanitizer on the determinism tests (any thread count gives the same bytes).
test-tsan: deps
	cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
	  -DMOEQ_TSAN=ON -DMOEQ_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build build-tsan -j $(JOBS) --target moeq_tests
	TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/moeq_tests --gtest_filter='*Determinis*:*ThreadCount*:*Threads*'

# libFuzzer targets (clang++): build-fuzz/fuzz/fuzz_<target>. fuzz-run runs each for
# FUZZ_SECONDS on a copy of its seed corpus; crash inputs land in build-fuzz/artifacts/<target>/.
fuzz:
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_CXX_FLAGS_RELEASE="-O1" -DMOEQ_FUZZ=ON -DMOEQ_BUILD_TESTS=OFF -DMOEQ_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers

fuzz-run: fuzz
	scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Rewrites every tracked C++ file as clang-format 14 prints it (ctest format_check checks it).
format:
	scripts/check-format.sh . --fix

release: deps
	cmake -S . -B $(BUILD_RELEASE) -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOEQ_BUILD_TESTS=OFF -DMOEQ_BUILD_BENCH=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD_RELEASE) -j $(JOBS)

demo: release
	scripts/demo.sh $(BUILD_RELEASE)/bin

bench: release
	scripts/bench.sh $(BUILD_RELEASE)/bin

clean:
	rm -rf $(BUILD) $(BUILD_RELEASE) build-asan build-tsan $(FUZZ_BUILD)
