#!/usr/bin/env bash
# Set everything up (idempotent) and run the co-inference demo on the bundled images.
# Extra args go to `edgent-ros demo` (e.g. --frames 100 --deadline-ms 50).
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh"
exec "$ROOT/.venv/bin/edgent-ros" demo "$@"
