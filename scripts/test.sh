#!/usr/bin/env bash
# Installs the test dependencies (Debian packages, the venv) and runs the whole suite, as root.
#   scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check engine tests bench
# A skip must never hide a failure, and "no tests ran" (pytest exit 5) is a failure.
set +e
.venv/bin/pytest -n 2 -p no:cacheprovider -ra "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit $rc
