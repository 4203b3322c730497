#!/usr/bin/env bash
# Set everything up (idempotent) and run the co-inference demo on the bundled images: as root,
# across the link testbed while the uplink crosses the planner's decision boundary (~1.5 min);
# otherwise, or with --plain, on one host. Extra args go to `edgent-ros demo` (e.g. --plain,
# --frames 100 --deadline-ms 50, --trace ../shared/data/traces/hsdpa-metro.csv).
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh"
exec "$ROOT/.venv/bin/edgent-ros" demo "$@"
