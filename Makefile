# Developer shortcuts. The README's two commands (go run . / go test) need
# none of this; `make cluster` is the one-command local scale-out.

REDIS_URL ?= redis://127.0.0.1:6379/0
RUN_DIR   ?= .run
# REDIS=cluster: `make cluster` runs on a Redis Cluster on these ports
# (3 masters, 3 replicas; cluster bus on each port + 10000).
REDIS               ?= single
REDIS_CLUSTER_PORTS ?= 6380 6381 6382 6383 6384 6385

.PHONY: run test cluster bench

run:
	go run .

test:
	go test -race ./...

# cluster: Redis (started if nothing answers on 6379), two instances on
# :7000 and :7001, and nginx on :8080 in front of them. Ctrl-C stops all.
# `make cluster REDIS=cluster`: the instances share a fresh Redis Cluster
# of 3 masters and 3 replicas on REDIS_CLUSTER_PORTS instead
# (./redis-cluster.sh), with -redis-cluster.
cluster:
	@set -e; mkdir -p $(RUN_DIR)/logs; go build -o $(RUN_DIR)/wall .; \
	pids=""; trap 'set +e; kill $$pids 2>/dev/null; wait; [ "$(REDIS)" != cluster ] || ./redis-cluster.sh stop $(RUN_DIR)/redis-cluster $(REDIS_CLUSTER_PORTS)' INT TERM EXIT; \
	if [ "$(REDIS)" = cluster ]; then \
		unset REDIS_URL; ./redis-cluster.sh start $(RUN_DIR)/redis-cluster $(REDIS_CLUSTER_PORTS); \
		export WALL_REDIS_CLUSTER=$$(echo $(REDIS_CLUSTER_PORTS) | sed 's/\([0-9]*\)/127.0.0.1:\1/g; s/ /,/g'); \
	else \
		if ! redis-cli -u $(REDIS_URL) ping >/dev/null 2>&1; then \
			redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --dir $(RUN_DIR) & pids="$$pids $$!"; \
			until redis-cli -u $(REDIS_URL) ping >/dev/null 2>&1; do sleep 0.1; done; \
		fi; \
		export REDIS_URL=$(REDIS_URL); \
	fi; \
	$(RUN_DIR)/wall -addr 127.0.0.1:7000 & pids="$$pids $$!"; \
	$(RUN_DIR)/wall -addr 127.0.0.1:7001 & pids="$$pids $$!"; \
	nginx -p $(CURDIR)/$(RUN_DIR) -c $(CURDIR)/nginx.conf & pids="$$pids $$!"; \
	echo "wall cluster: http://127.0.0.1:8080/ (Ctrl-C stops it)"; \
	wait

bench:
	go test -run '^$$' -bench . -benchmem ./...
