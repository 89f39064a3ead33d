#!/usr/bin/env bash
# Stops the cluster cluster/ceph-up.sh started in DIR (its files stay; a memstore OSD's objects do not).
set -uo pipefail
dir=${1:?usage: ceph-down.sh DIR}
for p in "$dir"/run/*.pid; do
    [ -e "$p" ] || continue
    pid=$(cat "$p")
    kill "$pid" 2>/dev/null
done
for p in "$dir"/run/*.pid; do
    [ -e "$p" ] || continue
    pid=$(cat "$p")
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    rm -f "$p"
done
exit 0
