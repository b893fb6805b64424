#!/bin/sh
# redis-cluster.sh start|stop DIR PORT...
#
# A local Redis Cluster for development (`make cluster REDIS=cluster`): one
# redis-server per port under DIR, nothing persisted, formed with one
# replica per master (6 ports: 3 masters, 3 replicas). start wipes DIR and
# returns once every slot is served; stop kills the nodes.
set -e
cmd=$1 dir=$2
shift 2
case $cmd in
start)
	rm -rf "$dir"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd) # redis-server resolves paths after its --dir
	for p in "$@"; do
		mkdir -p "$dir/$p"
		redis-server --port "$p" --bind 127.0.0.1 --daemonize yes \
			--dir "$dir/$p" --pidfile "$dir/$p/redis.pid" --logfile "$dir/$p/redis.log" \
			--save '' --appendonly no --repl-diskless-sync-delay 0 \
			--cluster-enabled yes --cluster-config-file nodes.conf \
			--cluster-node-timeout 5000 --cluster-require-full-coverage no
	done
	for p in "$@"; do
		n=0
		until redis-cli -p "$p" ping 2>/dev/null | grep -q PONG; do
			n=$((n + 1))
			if [ $n -gt 100 ]; then
				echo "redis-server on port $p did not start:" >&2
				tail -3 "$dir/$p/redis.log" >&2
				exit 1
			fi
			sleep 0.1
		done
	done
	nodes=""
	for p in "$@"; do nodes="$nodes 127.0.0.1:$p"; done
	# shellcheck disable=SC2086 # one argument per node
	redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes >"$dir/create.log"
	until redis-cli -p "$1" cluster info | grep -q cluster_state:ok; do sleep 0.2; done
	;;
stop)
	for p in "$@"; do
		if [ -f "$dir/$p/redis.pid" ]; then kill "$(cat "$dir/$p/redis.pid")" 2>/dev/null || true; fi
	done
	;;
*)
	echo "usage: $0 start|stop DIR PORT..." >&2
	exit 2
	;;
esac
