#!/usr/bin/env bash
# Set up mnistcodec in ./.venv: CPU PyTorch first (pinned), then the package
# with pinned dependencies. Idempotent; safe to rerun.
#   scripts/setup.sh          runtime + baselines + the playground (mnistcodec serve)
#   scripts/setup.sh --test   also the test tools, and (as root) Debian's chromium and
#                             chromium-driver for the playground's browser test
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras="baselines,serve"
[ "${1:-}" = "--test" ] && extras="baselines,serve,test"

if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromedriver ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing chromium and chromium-driver (the playground's browser test)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
    else
        echo "note: /usr/bin/chromedriver is missing and this is not root with apt-get;" \
            "the browser test (tests/test_playground_browser.py) will fail until" \
            "'apt-get install chromium chromium-driver' is run as root" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[${extras}]"
echo "mnistcodec installed in .venv ($(.venv/bin/mnistcodec --version))"
