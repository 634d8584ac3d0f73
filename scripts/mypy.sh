#!/usr/bin/env bash
# Type-check the library under its import name, lelp_studio. The folder is core/ and a fresh
# clone has no lelp_studio folder (mypy does not follow setuptools' editable finder), so mypy
# reads core/ through a symlink kept beside its cache. Extra arguments go to mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
src=.mypy_cache/src
mkdir -p "$src"
ln -sfn ../../core "$src/lelp_studio"
# errors name the files as they are in the repository (core/...), not through the symlink
MYPYPATH="$src" mypy -p lelp_studio "$@" | sed "s#^$src/lelp_studio/#core/#"
