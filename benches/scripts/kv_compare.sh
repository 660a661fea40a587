#!/bin/bash
# swarm-raft beside etcd (docs/BENCHMARKS.md, "swarm-raft beside etcd"): installs Debian's etcd
# (etcd-server 3.4.23) if it is missing, builds the kv_* binaries in release, and runs kv_compare:
# fresh clusters of 1 and 3 members per run on loopback ports, 1 and 64 clients from a separate
# kv_load process, 1 KiB puts, interleaved etcd/swarm runs, medians of the rounds as a markdown
# table on stdout (per-run lines on stderr). Not run by CI (minutes). Usage, from the repository
# root (extra arguments go to kv_compare, e.g. --rounds 3 --duration 5 --work-dir /var/tmp):
#   benches/scripts/kv_compare.sh [kv_compare arguments...]
set -euo pipefail
if ! command -v etcd > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server > /dev/null
    # The package enables a system etcd on the default ports; this benchmark starts its own.
    if command -v systemctl > /dev/null && systemctl is-active --quiet etcd 2> /dev/null; then
        systemctl stop etcd
    fi
fi
cargo build --release -p swarm-benches --bin kv_server --bin kv_load --bin kv_compare
target/release/kv_compare --etcd "$(command -v etcd)" --bin-dir target/release "$@"
