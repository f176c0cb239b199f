# moeq: two entry points for a fresh Debian machine.
#   make demo   builds a Release binary set and runs the main job on the bundled model
#   make test   installs missing Debian packages, builds and runs the test suite
#   make llamacpp-deps  installs node/npm and the pinned llama.cpp (node-llama-cpp) of the
#                       conformance test (ctest -L llamacpp); `make test` does it too
# Other targets: test-sanitize (ASan+UBSan build and tests), bench, clean.

BUILD         ?= build
BUILD_RELEASE ?= build-release
JOBS          ?= $(shell nproc 2>/dev/null || echo 2)
SANITIZE      ?= OFF
BUILD_TYPE    ?= RelWithDebInfo
CMAKE_FLAGS   ?=

.PHONY: all deps test-deps llamacpp-deps build test test-sanitize release demo bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DMOEQ_SANITIZE=$(SANITIZE) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# The report test renders HTML in Debian's chromium (it skips with a message without it);
# help2man generates the man pages at build time (optional, cmake/docs.cmake).
test-deps: llamacpp-deps
	@scripts/install-deps.sh chromium help2man

# The llama.cpp conformance test loads moeq's GGUF files in node-llama-cpp (prebuilt llama.cpp).
llamacpp-deps:
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || scripts/install-deps.sh nodejs npm
	@scripts/install-llamacpp.sh

test: test-deps build
	ctest --test-dir $(BUILD) --output-on-failure --no-tests=error -j $(JOBS)

test-sanitize:
	$(MAKE) test BUILD=build-asan SANITIZE=ON BUILD_TYPE=Debug

release: deps
	cmake -S . -B $(BUILD_RELEASE) -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOEQ_BUILD_TESTS=OFF -DMOEQ_BUILD_BENCH=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD_RELEASE) -j $(JOBS)

demo: release
	scripts/demo.sh $(BUILD_RELEASE)/bin

bench: release
	scripts/bench.sh $(BUILD_RELEASE)/bin

clean:
	rm -rf $(BUILD) $(BUILD_RELEASE) build-asan
