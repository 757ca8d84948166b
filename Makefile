# The two commands a newcomer needs:
#   make run   - install what is missing, build, start one node on 127.0.0.1:2379
#   make test  - install what is missing, build, run every test
BUILD ?= build
JOBS ?= 2
DATA_DIR ?= default.cairn

.PHONY: setup build build-server run test unit-test e2e-test clean

setup:
	./scripts/setup.sh

# The generated Makefile is written last: a configure that stopped half-way
# (leaving only CMakeCache.txt) is run again.
$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: setup $(BUILD)/Makefile
	cmake --build $(BUILD) -j$(JOBS)

# Only what `run` needs: a newcomer should not wait for every test binary.
build-server: setup $(BUILD)/Makefile
	cmake --build $(BUILD) -j$(JOBS) --target cairn cairnctl

# make cluster - three members on this machine (etcd's Procfile ports: clients
#                2379, 22379, 32379); see scripts/cluster.sh
.PHONY: cluster
cluster: build-server
	./scripts/cluster.sh

run: build-server
	./$(BUILD)/cmd/cairn --name default --data-dir $(DATA_DIR) \
	  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379

unit-test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

e2e-test: build
	CAIRN_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -x -q tests

test: unit-test e2e-test

clean:
	rm -rf $(BUILD)

# make bench - cairn against etcd 3.4 on this machine, same workloads, one table
#              and docs/img/bench-latency-vs-throughput.png (BENCH_SCALE=0.1: quick),
#              then 3-member clusters of each, their own table (BENCH_CLUSTER=0 or
#              1: only the single members or only the clusters)
.PHONY: bench
bench: setup
	JOBS=$(JOBS) ./scripts/bench-vs-etcd.sh

# make bench-scale - cairn and etcd against scale (issue 11): put/range throughput,
#                    RSS and disk at 10k, 100k and 1M keys, watch delivery latency at
#                    1k, 10k and 100k watchers; tables and docs/img/scale-*.png
#                    (SCALE_10M=1: also 10M keys, a long run; knobs: scripts/bench-scale.sh)
.PHONY: bench-scale
bench-scale: setup
	JOBS=$(JOBS) ./scripts/bench-scale.sh

# make raft-soak SEEDS=100000 [START=1] [PROFILE=mixed] - the Raft simulator over
#   many seeds (stops at the first failure and prints the command to reproduce it)
# make raft-soak SEED=1234 TRACE=1 [PROFILE=mixed] - one seed, with a full trace
.PHONY: raft-soak
raft-soak: $(BUILD)/Makefile
	cmake --build $(BUILD) -j$(JOBS) --target raft-soak
	./$(BUILD)/src/raft-soak --profile=$(or $(PROFILE),mixed) $(if $(SEED),--seed=$(SEED) $(if $(TRACE),--trace),--seeds=$(or $(SEEDS),10000) --start=$(or $(START),1))

# make host-soak SEEDS=10000 [START=1] [PROFILE=mixed|small|lease] - the simulator that
#   drives the server's own Raft host, log store and log files (src/hostsim/) over many
#   seeds; make host-soak SEED=1234 TRACE=1 - one seed, with a trace
.PHONY: host-soak
host-soak: $(BUILD)/Makefile
	cmake --build $(BUILD) -j$(JOBS) --target host-soak
	./$(BUILD)/src/host-soak --profile=$(or $(PROFILE),mixed) $(if $(SEED),--seed=$(SEED) $(if $(TRACE),--trace),--seeds=$(or $(SEEDS),1000) --start=$(or $(START),1))

# make cluster-soak RUNS=20 [TARGET=etcd|cairn] [START=1] - seeded 3-member cluster runs
#   with random nemesis mixes (kills, pauses, network faults, membership changes: see
#   tests/README.md), each checked by tests/history_check.py; continues after a
#   failure and prints every failing seed with the command that replays it
.PHONY: cluster-soak
cluster-soak:
	CAIRN_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/cluster_soak.py \
	  --target $(or $(TARGET),cairn) --runs $(or $(RUNS),10) --start $(or $(START),1)
