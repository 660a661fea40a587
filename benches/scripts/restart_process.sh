#!/bin/bash
# Restart-to-serving of swarm-node with N adopted process tasks (docs/BENCHMARKS.md, "supervised
# process tasks"): run the daemon (process runtime), create N replicas of `sleep 100000`, SIGKILL
# the daemon, start it again on the same data directory and time (a) serving, (b) the agent's
# adoption log line, (c) `docker service ls` at N/N; compare the task pids; SIGTERM and check that
# no task and no supervisor remain. Needs the docker CLI. Usage, from the repository root:
#   benches/scripts/restart_process.sh N [path/to/swarm-node]
set -u
N=${1:-1000}; B=${2:-target/debug/swarm-node}
D=$(mktemp -d /tmp/proc-restart-XXXX); mkdir -p $D/cfg
export DOCKER_HOST=unix://$D/s.sock DOCKER_CONFIG=$D/cfg
start() { $B run --data-dir $D/data --socket $D/s.sock --runtime process --init --mesh-addr 127.0.0.1 > $D/out.$1 2> $D/log.$1 & echo $! > $D/pid; }
wait_line() { until grep -q "$2" $1 2>/dev/null; do sleep 0.01; done; }
start 1; wait_line $D/out.1 "export DOCKER_HOST"
docker service create --detach --name fig --replicas $N busybox sleep 100000 > /dev/null
until docker service ls --format '{{.Replicas}}' | grep -qx "$N/$N"; do sleep 1; done
before=$(pgrep -f "sleep 100000$" | sort | md5sum)
count_before=$(pgrep -fc "sleep 100000$")
kill -9 $(cat $D/pid); while kill -0 $(cat $D/pid) 2>/dev/null; do sleep 0.05; done
t0=$(date +%s.%N); start 2
wait_line $D/out.2 "export DOCKER_HOST"; t1=$(date +%s.%N)
wait_line $D/log.2 "holds tasks from a previous run"; t2=$(date +%s.%N)
until docker service ls --format '{{.Replicas}}' | grep -qx "$N/$N"; do sleep 0.05; done; t3=$(date +%s.%N)
after=$(pgrep -f "sleep 100000$" | sort | md5sum)
echo "N=$N processes before=$count_before after=$(pgrep -fc "sleep 100000$") same-pids=$([ "$before" = "$after" ] && echo yes || echo no)"
echo "API serving: $(echo "$t1 - $t0" | bc) s; tasks adopted (agent recovered): $(echo "$t2 - $t0" | bc) s; service ls $N/$N: $(echo "$t3 - $t0" | bc) s"
grep "holds tasks" $D/log.2 | head -1
kill -TERM $(cat $D/pid); while kill -0 $(cat $D/pid) 2>/dev/null; do sleep 0.2; done
echo "left after SIGTERM: $(pgrep -fc "sleep 100000$") tasks, $(pgrep -fc "$D/data/supervisors") supervisors"
rm -rf $D
