#!/usr/bin/env bash
# Layering of the turingwatch crate (domain <- actors <- roles, no cycles, one door to the store):
# see scripts/check_layers.py and the README's "Layers". Run by scripts/test.sh.
set -euo pipefail
exec python3 "$(dirname "$0")/check_layers.py" "$@"
