#!/usr/bin/env bash
# Set everything up (idempotent) and run the whole test suite. Extra args go to pytest.
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
cd "$ROOT"
exec python -m pytest -q -p no:cacheprovider "$@"
