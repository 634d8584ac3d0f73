#!/usr/bin/env bash
# Idempotent environment set-up shared by scripts/app.sh and scripts/test.sh: a .venv with the
# CPU build of torch 2.13.0 (pip would otherwise pull a multi-GB CUDA build; on a GPU machine
# set LELP_TORCH=torch to get the CUDA build) and the project with its dev, ray and hf extras.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.lelp-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -d .venv ] || python3 -m venv .venv
  . .venv/bin/activate
  python -m pip install -q --upgrade pip
  python -m pip install -q "${LELP_TORCH:-torch==2.13.0}"
  python -m pip install -q -e '.[dev,ray,hf]'
  echo "$want" > "$stamp"
fi
