#!/usr/bin/env bash
# Set up mnistcodec in ./.venv: CPU PyTorch first (pinned), then the package
# with pinned dependencies. Idempotent; safe to rerun.
#   scripts/setup.sh          runtime + baselines
#   scripts/setup.sh --test   also the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras="baselines"
[ "${1:-}" = "--test" ] && extras="baselines,test"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[${extras}]"
echo "mnistcodec installed in .venv ($(.venv/bin/mnistcodec --version))"
