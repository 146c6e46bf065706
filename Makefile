# The two commands of the README, and the pieces they are made of.
#   make demo   install what is missing, build, run the main job
#   make test   install what is missing, build, run every suite (plain, then
#               ASan+UBSan), then the loader and the differential fuzzer
#               (tests/fuzz/run.sh) for FUZZ_SECONDS each
#   make format rewrite the C files as .clang-format says (the `format` test checks)
#   make bench  bpc against PyTorch eager, torch.compile and JAX (bench/README.md)
#   make bench-long  GPT-2 124M at T = 1024 against PyTorch eager (bench/long.py)
BUILD ?= build
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60

.PHONY: all deps build demo test test-plain test-asan fuzz format bench bench-long clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DBPC_TESTS=ON >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	@scripts/demo.sh $(BUILD)

test-plain: deps
	cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build-test -j$(JOBS)
	cd build-test && ctest --output-on-failure -j$(JOBS)

test-asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DBPC_SANITIZE=ON >/dev/null
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j$(JOBS)

fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh

test: test-plain test-asan fuzz

# Rewrite every C file as .clang-format says (ctest's `format` checks it)
format: deps
	git ls-files '*.c' '*.h' | xargs clang-format-19 -i

bench: deps
	bench/setup.sh build-bench
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build-bench -j$(JOBS) --target bpc bench_peak bench_gemm
	/usr/bin/python3 bench/bench.py --build build-bench $(BENCH_FLAGS)

# GPT-2 124M at T = 1024 against PyTorch eager (bench/long.py; ~30 min)
bench-long: deps
	bench/setup.sh build-bench
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build-bench -j$(JOBS) --target bpc
	/usr/bin/python3 bench/long.py --build build-bench $(BENCH_FLAGS)

clean:
	rm -rf build build-test build-asan build-fuzz build-bench
