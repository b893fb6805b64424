# Developer shortcuts. The README's two commands (go run . / go test) need
# none of this; `make cluster` is the one-command local scale-out.

REDIS_URL ?= redis://127.0.0.1:6379/0
RUN_DIR   ?= .run

.PHONY: run test cluster bench

run:
	go run .

test:
	go test -race ./...

# cluster: Redis (started if nothing answers on 6379), two instances on
# :7000 and :7001, and nginx on :8080 in front of them. Ctrl-C stops all.
cluster:
	@set -e; mkdir -p $(RUN_DIR)/logs; go build -o $(RUN_DIR)/wall .; \
	pids=""; trap 'kill $$pids 2>/dev/null; wait' INT TERM EXIT; \
	if ! redis-cli -u $(REDIS_URL) ping >/dev/null 2>&1; then \
		redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --dir $(RUN_DIR) & pids="$$pids $$!"; \
		until redis-cli -u $(REDIS_URL) ping >/dev/null 2>&1; do sleep 0.1; done; \
	fi; \
	REDIS_URL=$(REDIS_URL) $(RUN_DIR)/wall -addr 127.0.0.1:7000 & pids="$$pids $$!"; \
	REDIS_URL=$(REDIS_URL) $(RUN_DIR)/wall -addr 127.0.0.1:7001 & pids="$$pids $$!"; \
	nginx -p $(CURDIR)/$(RUN_DIR) -c $(CURDIR)/nginx.conf & pids="$$pids $$!"; \
	echo "wall cluster: http://127.0.0.1:8080/ (Ctrl-C stops it)"; \
	wait

bench:
	go test -run '^$$' -bench . -benchmem ./...
