#!/bin/bash
# SwarmKit's scheduler benchmarks side by side with swarm's (issue 13; docs/BENCHMARKS.md, "SwarmKit
# side by side (skbench)"). A documented campaign command, not run by CI (tens of minutes).
#
# Installs Debian's Go (golang-go, 1.19) if `go` is missing, extracts SwarmKit at 2501f6ef0 (the last
# commit whose go.mod Go 1.19 builds offline from its vendor directory) from a git mirror or clone,
# builds its scheduler test binary and swarm's `sched_profile_mimalloc` example (release), then, for
# ROUNDS rounds, runs every shape interleaved: SwarmKit with GOMAXPROCS=1, SwarmKit with Go's
# default GOMAXPROCS, swarm (one fresh process; wall clock and thread CPU time of the same region)
# and, with CRITERION=1, swarm's criterion row (`cargo bench ... -- '^swarmkit/<shape>$'`).
# `cat /proc/loadavg` is printed before every run. Per-run lines go to stderr; the medians come out
# as a markdown table on stdout. Usage, from the repository root:
#   benches/scripts/swarmkit_compare.sh SWARMKIT_GIT_DIR [ROUNDS]
#   (e.g. /work/.mirror/moby+swarmkit/repo 3; env: CRITERION=1, SHAPES="1k_1k 1k_10k ...",
#   SK_MODES="1 default" (GOMAXPROCS values for SwarmKit; "1" alone halves the Go time),
#   WARM=N extra rounds per swarm process for the 1k-node shapes, reported apart)
#
# The timed regions (see benches/benches/sched_scheduler.rs): SwarmKit's `benchScheduler` starts its
# timer inside the transaction that creates the nodes and tasks, after building them, and stops it
# when every task update has been seen (plus scheduler.Stop and store Close); swarm's region commits
# the nodes and tasks (built before) and settles until every assignment is committed. The
# 100k nodes x 100k tasks shape is not in the default list: SwarmKit did not finish it in 13 min.
set -euo pipefail

SRC=${1:?usage: $0 SWARMKIT_GIT_DIR [ROUNDS]}
ROUNDS=${2:-3}
COMMIT=2501f6ef0
SHAPES=${SHAPES:-"1k_1k 1k_10k 1k_100k 100k_1k 5k_100k_third"}
WARM=${WARM:-0}
SK_MODES=${SK_MODES:-"1 default"}

# shape -> SwarmKit benchmark, swarm nodes, swarm tasks, swarm extra argument, criterion id
shape() {
    case $1 in
    1k_1k) echo "BenchmarkScheduler1kNodes1kTasks 1000 1000 - 1k_nodes_1k_tasks" ;;
    1k_10k) echo "BenchmarkScheduler1kNodes10kTasks 1000 10000 - 1k_nodes_10k_tasks" ;;
    1k_100k) echo "BenchmarkScheduler1kNodes100kTasks 1000 100000 - 1k_nodes_100k_tasks" ;;
    100k_1k) echo "BenchmarkScheduler100kNodes1kTasks 100000 1000 - 100k_nodes_1k_tasks" ;;
    100k_100k) echo "BenchmarkScheduler100kNodes100kTasks 100000 100000 - 100k_nodes_100k_tasks" ;;
    5k_100k_third)
        echo "BenchmarkSchedulerConstraints5kNodes100kTasks 5000 100000 third 5k_nodes_100k_tasks_third_eligible"
        ;;
    *)
        echo "unknown shape $1" >&2
        exit 2
        ;;
    esac
}

if ! command -v go > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go > /dev/null
fi
WORK=$(mktemp -d /tmp/swarmkit_compare.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
git -C "$SRC" archive "$COMMIT" | tar -x -C "$WORK"
(cd "$WORK" && GOFLAGS=-mod=vendor GOPROXY=off go test -c -mod=vendor ./manager/scheduler/ -o "$WORK/sched.test")
cargo build --release -q -p swarm-sched --features testing --example sched_profile_mimalloc
PROFILE=target/release/examples/sched_profile_mimalloc
if [ "${CRITERION:-0}" = 1 ]; then
    cargo bench -q -p swarm-benches --bench sched_scheduler --no-run
fi
echo "# $(go version); SwarmKit $COMMIT; $(date -u '+%F %T UTC'); $(nproc) cores" >&2

RES=$WORK/results # lines: shape column value_ms
load() { echo "  load $(cut -d' ' -f1-3 /proc/loadavg)" >&2; }

# SwarmKit: one iteration (`-test.benchtime 1x` runs exactly one) in a fresh process; ns/op -> ms.
run_swarmkit() { # shape bench gomaxprocs column
    load
    local out ms
    if [ "$3" = default ]; then
        out=$("$WORK/sched.test" -test.run x -test.bench "^$2\$" -test.benchtime 1x)
    else
        out=$(GOMAXPROCS=$3 "$WORK/sched.test" -test.run x -test.bench "^$2\$" -test.benchtime 1x)
    fi
    ms=$(echo "$out" | awk '/ns\/op/ { for (i = 1; i < NF; i++) if ($(i + 1) == "ns/op") print $i / 1e6 }')
    echo "  $1 $4 $ms ms" >&2
    echo "$1 $4 $ms" >> "$RES"
}

# swarm: round 0 of a fresh process (as SwarmKit's single iteration), wall and thread CPU time;
# WARM>0 adds rounds in the same process for the 1k-node shapes, reported as a warm median.
run_swarm() { # shape nodes tasks extra
    load
    local rounds=1 out
    if [ "$WARM" -gt 0 ] && [ "$2" = 1000 ]; then rounds=$((WARM + 1)); fi
    if [ "$4" = - ]; then
        out=$("$PROFILE" "$2" "$3" "$rounds")
    else
        out=$("$PROFILE" "$2" "$3" "$rounds" "$4")
    fi
    echo "$out" | sed 's/^/  /' >&2
    echo "$out" | awk -v s="$1" '{
        for (i = 1; i < NF; i++) {
            if ($i == "cpu") cpu = $(i + 1)
            if ($i == "wall") wall = $(i + 1)
        }
        if ($2 == 0) { print s, "swarm_wall", wall; print s, "swarm_cpu", cpu }
        else { print s, "swarm_warm_wall", wall; print s, "swarm_warm_cpu", cpu }
    }' >> "$RES"
}

# criterion's estimate of the row (mean of 10 flat samples), in ms.
run_criterion() { # shape id
    load
    local est
    est=$(cargo bench -q -p swarm-benches --bench sched_scheduler -- "^swarmkit/$2\$" 2> /dev/null |
        awk '/time:/ { v = $(NF - 3); u = $(NF - 2);
            f = (u == "s") ? 1000 : (u == "ms") ? 1 : (u == "µs" || u == "us") ? 0.001 : 0.000001;
            print v * f; exit }')
    echo "  $1 criterion $est ms" >&2
    echo "$1 criterion $est" >> "$RES"
}

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round" >&2
    for s in $SHAPES; do
        read -r bench nodes tasks extra crit <<< "$(shape "$s")"
        for m in $SK_MODES; do run_swarmkit "$s" "$bench" "$m" "sk_$m"; done
        run_swarm "$s" "$nodes" "$tasks" "$extra"
        if [ "${CRITERION:-0}" = 1 ]; then run_criterion "$s" "$crit"; fi
    done
done

median() { # shape column
    awk -v s="$1" -v c="$2" '$1 == s && $2 == c { print $3 }' "$RES" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
            else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.0fx", a / b }'; }

echo "| shape | SwarmKit GOMAXPROCS=1 (ms) | SwarmKit default (ms) | swarm wall (ms) | swarm CPU (ms) | criterion (ms) | ratio SK1 / swarm wall | ratio SKdefault / swarm wall | ratio SK1 / criterion |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for s in $SHAPES; do
    sk1=$(median "$s" sk_1)
    skd=$(median "$s" sk_default)
    sw=$(median "$s" swarm_wall)
    sc=$(median "$s" swarm_cpu)
    cr=$(median "$s" criterion)
    echo "| $s | $sk1 | $skd | $sw | $sc | $cr | $(ratio "$sk1" "$sw") | $(ratio "$skd" "$sw") | $(ratio "$sk1" "$cr") |"
done
if [ "$WARM" -gt 0 ]; then
    echo
    echo "swarm warm rounds (1k-node shapes, rounds after the first of each process), median ms:"
    for s in $SHAPES; do
        w=$(median "$s" swarm_warm_wall)
        [ "$w" = - ] || echo "  $s wall $w, CPU $(median "$s" swarm_warm_cpu)"
    done
fi
