#!/usr/bin/env bash
# Runs the scenario matrix of BENCHMARKS.md: every scenario against tinysse,
# the raw-socket floor (bench/rawfanout), Centrifugo and Mercure (installed
# by loadtest/peers/install.sh; a peer that is missing is left out, with a
# note), in the same run. Targets are interleaved: round 1 of a scenario
# runs every target, then round 2, and so on. Each run starts a fresh server
# and stops it after (by its pid). Results: one JSON per run in OUT, then
# `loadtest summarize OUT` prints the tables (medians, ratios).
#
# Usage: loadtest/scenarios.sh [OUT] [SCENARIOS...]
#   OUT        results directory (default /tmp/tinysse-scenarios)
#   SCENARIOS  any of 1 2 3 4 5 6 7 (default: all)
#   ROUNDS=3   runs of each scenario and target
#   TARGETS    instead of each scenario's own list, e.g. "raw tinysse tinysse-c1 tinysse-c5"
#              (tinysse-cN: tinysse --write-coalesce Nms)
#
# About 6 minutes per round on a 2-core machine. Everything listens on and
# loads 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${1:-/tmp/tinysse-scenarios}
shift || true
scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(1 2 3 4 5 6 7)
rounds=${ROUNDS:-3}
peers=$root/loadtest/peers
mkdir -p "$out"
bin=$(mktemp -d)
trap 'stop_server; rm -rf "$bin"' EXIT

export GOFLAGS=-buildvcs=false
go build -o "$bin/tinysse" ./cmd/tinysse
go build -o "$bin/rawfanout" ./bench/rawfanout
go build -o "$bin/loadtest" ./loadtest

pid=
stop_server() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		pid=
	fi
}

# start_server TARGET: starts it in the background, sets pid, url, kind.
start_server() {
	local t=$1
	case $t in
	tinysse) "$bin/tinysse" -l 127.0.0.1:19831 -L WARN -c 4096 >"$out/server.log" 2>&1 & ;;
	tinysse-c*) "$bin/tinysse" -l 127.0.0.1:19831 -L WARN -c 4096 --write-coalesce "${t#tinysse-c}ms" >"$out/server.log" 2>&1 & ;;
	tinysse-lua1) "$bin/tinysse" -l 127.0.0.1:19831 -L WARN -c 4096 --script loadtest/message-hook.lua --lua-vms 1 >"$out/server.log" 2>&1 & ;;
	tinysse-luaauto) "$bin/tinysse" -l 127.0.0.1:19831 -L WARN -c 4096 --script loadtest/message-hook.lua --lua-vms auto >"$out/server.log" 2>&1 & ;;
	raw) "$bin/rawfanout" -l 127.0.0.1:19841 >"$out/server.log" 2>&1 & ;;
	centrifugo) CENTRIFUGO_HTTP_SERVER_PORT=18000 "$peers/bin/centrifugo" -c "$peers/centrifugo.json" >"$out/server.log" 2>&1 & ;;
	mercure)
		mkdir -p "$bin/xdg"
		XDG_DATA_HOME=$bin/xdg XDG_CONFIG_HOME=$bin/xdg MERCURE_PORT=13000 \
			"$peers/bin/mercure" run --config "$peers/Caddyfile" --adapter caddyfile >"$out/server.log" 2>&1 &
		;;
	esac
	pid=$!
	case $t in
	tinysse*) kind=tinysse url=http://127.0.0.1:19831/sse port=19831 ;;
	raw) kind=raw url=http://127.0.0.1:19841/sse port=19841 ;;
	centrifugo) kind=centrifugo url=http://127.0.0.1:18000/connection/uni_sse port=18000 ;;
	mercure) kind=mercure url=http://127.0.0.1:13000/.well-known/mercure port=13000 ;;
	esac
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "$t did not start; see $out/server.log" >&2
	return 1
}

# The scenarios: the load tool's arguments and the targets where each applies.
args_of() {
	case $1 in
	1) echo --subscribers 1000 --publish-rate 100 --size 100 --duration 10s ;;
	2) echo --subscribers 500 --publish-rate 1000 --size 100 --duration 10s ;;
	3) echo --subscribers 10000 --publish-rate 10 --size 100 --duration 10s ;;
	4) echo --subscribers 15000 --publish-rate 0 --duration 3s ;;
	5) echo --subscribers 10 --publish-rate max --publishers 4 --size 100 --duration 5s ;;
	6) echo --churn --subscribers 20 --duration 5s ;;
	7) echo --subscribers 500 --publish-rate 1000 --size 100 --duration 10s ;;
	esac
}
targets_of() {
	if [ -n "${TARGETS:-}" ]; then
		echo "$TARGETS"
		return
	fi
	case $1 in
	1 | 2) echo raw tinysse tinysse-c5 centrifugo mercure ;;
	7) echo tinysse tinysse-lua1 tinysse-luaauto ;;
	*) echo raw tinysse centrifugo mercure ;;
	esac
}

have() {
	case $1 in
	centrifugo | mercure) [ -x "$peers/bin/$1" ] ;;
	*) true ;;
	esac
}

for s in "${scenarios[@]}"; do
	for r in $(seq "$rounds"); do
		for t in $(targets_of "$s"); do
			if ! have "$t"; then
				echo "scenario $s: $t not installed (loadtest/peers/install.sh $t), left out" >&2
				continue
			fi
			start_server "$t"
			sleep 0.5
			f="$out/S${s}_${t}_r${r}.json"
			echo "scenario $s round $r: $t" >&2
			# shellcheck disable=SC2046
			"$bin/loadtest" --target "$kind" --url "$url" --pid "$pid" --json --quiet $(args_of "$s") >"$f" || true
			stop_server
			jq -c '{ok, deliveries: .deliveries.per_second, lost: .deliveries.lost, p99: .latency_ms.p99, cpu_m: .server.cpu_seconds_per_million_deliveries, rss_sub: .server.rss_per_subscriber, churn: .churn.per_second}' "$f" >&2 || true
		done
	done
done
"$bin/loadtest" summarize "$out"
