#!/usr/bin/env bash
# The test command of the README (and of CI): installs what the tests need, torch pinned first
# (any other torch spec makes pip pull a multi-GB CUDA build), then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -e ".[test]"
python -m pytest -q "$@"
