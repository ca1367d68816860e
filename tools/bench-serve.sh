#!/usr/bin/env bash
# The redis-benchmark comparison of tools/RESULTS.md: ringkv serve (Sync and Buffered),
# redis-server (appendonly yes, appendfsync always and everysec), and twemproxy in front
# of two ringkv servers. Needs a release build (cargo build --release -p ringkv-tools)
# and tools/install-test-deps.sh. Data goes under ./target/bench-serve (a real disk: not
# tmpfs). Every server is started here on 127.0.0.1 and stopped at the end.
#
#   tools/bench-serve.sh [N_PIPELINED] [N_UNPIPELINED]     (defaults 1000000 200000)
set -euo pipefail
cd "$(dirname "$0")/.."
n_pipelined=${1:-1000000}
n_plain=${2:-200000}
ringkv=./target/release/ringkv
root=$PWD/target/bench-serve
rm -rf "$root"
mkdir -p "$root"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 200); do
        redis-cli -p "$1" PING >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "nothing answers on port $1" >&2
    return 1
}

start_ringkv() { # name port durability
    "$ringkv" serve --dir "$root/$1" --port "$2" --cores 2 --durability "$3" \
        >"$root/$1.log" 2>&1 &
    pids+=($!)
    wait_port "$2"
}

start_redis() { # name port appendfsync
    mkdir -p "$root/$1"
    redis-server --port "$2" --bind 127.0.0.1 --dir "$root/$1" --save "" \
        --appendonly yes --appendfsync "$3" --daemonize no >"$root/$1.log" 2>&1 &
    pids+=($!)
    wait_port "$2"
}

bench() { # label port extra-args...
    local label=$1 port=$2
    shift 2
    echo "## $label: redis-benchmark -p $port $*"
    echo "load before: $(uptime)"
    redis-benchmark -p "$port" "$@" --csv | sed 's/^/    /'
}

run_all() { # label port
    bench "$1, pipelined" "$2" -t set,get -n "$n_pipelined" -P 16 -c 50
    bench "$1, not pipelined" "$2" -t set,get -n "$n_plain" -c 50
    bench "$1, pipelined, random keys" "$2" -t set,get -n "$n_pipelined" -P 16 -c 50 -r 1000000
}

stop_last() { # stops the server started last, so that it idles beside no other run
    kill -TERM "${pids[-1]}"
    wait "${pids[-1]}" 2>/dev/null || true
}

start_ringkv ringkv-sync 7301 sync
run_all "ringkv serve, sync" 7301
stop_last
start_ringkv ringkv-buffered 7302 buffered
run_all "ringkv serve, buffered" 7302
stop_last
start_redis redis-always 7303 always
run_all "redis-server, appendfsync always" 7303
stop_last
start_redis redis-everysec 7304 everysec
run_all "redis-server, appendfsync everysec" 7304
stop_last

for durability in sync buffered; do
    start_ringkv "tw-$durability-a" 7311 "$durability"
    a=${pids[-1]}
    start_ringkv "tw-$durability-b" 7312 "$durability"
    b=${pids[-1]}
    cat >"$root/nutcracker-$durability.yml" <<YML
ringkv:
  listen: 127.0.0.1:7310
  hash: murmur
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  timeout: 5000
  servers:
   - 127.0.0.1:7311:1 ringkv-a
   - 127.0.0.1:7312:1 ringkv-b
YML
    nutcracker -c "$root/nutcracker-$durability.yml" -s 7319 -o "$root/nutcracker-$durability.log" &
    proxy=$!
    pids+=($proxy)
    wait_port 7310
    run_all "twemproxy + 2 ringkv serve, $durability" 7310
    kill -TERM "$proxy" "$a" "$b"
    wait "$proxy" "$a" "$b" 2>/dev/null || true
done
echo "load after: $(uptime)"
