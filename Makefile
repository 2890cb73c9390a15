# jobstate: the two commands are `make run` and `make test`.
BUILD_DIR ?= build
SAN_DIR ?= build-sanitize
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 20
TSAN_DIR ?= build-tsan
JOBS ?= 2
DATA_DIR ?= ./jobstate-data
LISTEN ?= 127.0.0.1:8080

.PHONY: all deps node-deps build run test test-sanitize test-tsan test-failover fuzz bench crash-loop format clean

all: build

deps:
	@scripts/install-deps

# The npm test tools (package-lock.json): needs Node.js >= 20.19.
node-deps:
	@scripts/install-node-deps

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j$(JOBS)

run: build
	$(BUILD_DIR)/app/jobstate serve --data-dir $(DATA_DIR) --listen $(LISTEN)

test: build node-deps
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)

$(SAN_DIR)/CMakeCache.txt:
	cmake -S . -B $(SAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DJOBSTATE_SANITIZE=ON

test-sanitize: deps $(SAN_DIR)/CMakeCache.txt
	cmake --build $(SAN_DIR) -j$(JOBS)
	cd $(SAN_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  JOBSTATE_SANITIZE=1 ctest --output-on-failure -j$(JOBS)

$(TSAN_DIR)/CMakeCache.txt:
	cmake -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DJOBSTATE_TSAN=ON

# ThreadSanitizer over the threaded suites only (JOBSTATE_TSAN_TESTS in
# tests/CMakeLists.txt). Every report of every process goes to
# $(TSAN_DIR)/tsan-reports; any report fails the target (tests/tsan.supp
# holds the suppressions, each with its cause).
test-tsan: deps $(TSAN_DIR)/CMakeCache.txt
	cmake --build $(TSAN_DIR) -j$(JOBS)
	rm -rf $(TSAN_DIR)/tsan-reports && mkdir -p $(TSAN_DIR)/tsan-reports
	cd $(TSAN_DIR) && rc=0; \
	  TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=0 second_deadlock_stack=1 log_path=$(abspath $(TSAN_DIR))/tsan-reports/report" \
	  ctest --output-on-failure -j$(JOBS) || rc=$$?; \
	  if [ -n "$$(ls tsan-reports)" ]; then cat tsan-reports/*; \
	    echo "ThreadSanitizer: reports in $(TSAN_DIR)/tsan-reports: $$(ls tsan-reports | tr '\n' ' ')"; rc=1; fi; \
	  exit $$rc

# The Patroni failover test: a three-member cluster, two nodes, writers
# through a SIGKILL of the primary's postgres and of its whole member.
test-failover: build
	JOBSTATE_BIN=$(BUILD_DIR)/app/jobstate tests/failover/run

# libFuzzer targets (fuzz/, clang): built alone in $(FUZZ_DIR), each run for
# FUZZ_SECONDS from its seed corpus; fails on any crash (docs/operations.md).
$(FUZZ_DIR)/CMakeCache.txt:
	cmake -S . -B $(FUZZ_DIR) -DJOBSTATE_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo

fuzz: deps $(FUZZ_DIR)/CMakeCache.txt
	cmake --build $(FUZZ_DIR) -j$(JOBS) --target fuzzers
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/run-fuzzers $(FUZZ_DIR)

bench: build
	bench/run-all.sh

# 100 SIGKILLs of serve under 16 writers, nothing acknowledged lost (a few minutes).
crash-loop: build
	JOBSTATE_BIN=$(BUILD_DIR)/app/jobstate bench/crash-loop.sh

format:
	git ls-files '*.h' '*.cpp' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(SAN_DIR) $(TSAN_DIR) $(FUZZ_DIR)
