#!/usr/bin/env bash
# Starts every node of an initialised cluster directory in the background.
# Usage: cluster/launch-local.sh DIR   (stop with: pkill -f 'custody node --config DIR')
set -euo pipefail
dir=${1:?usage: launch-local.sh DIR}
for cfg in "$dir"/node*/node.toml; do
  node_dir=$(dirname "$cfg")
  custody node --config "$cfg" >>"$node_dir/node.log" 2>&1 &
  echo "started $(basename "$node_dir") (pid $!), log: $node_dir/node.log"
done
