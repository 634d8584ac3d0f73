#!/usr/bin/env bash
# Start lelp-studio on the built-in text demo (http://127.0.0.1:8501); nothing to download.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec streamlit run app.py "$@"
