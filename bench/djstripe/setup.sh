#!/usr/bin/env bash
# Create (or refresh) bench/.venv-djstripe from bench/requirements-djstripe.txt; idempotent: pip runs
# only when the venv is missing or the requirements file changed since the last install.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv-djstripe"
req="$here/requirements-djstripe.txt"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
stamp="$venv/.installed-requirements"
sum=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$sum" > "$stamp"
fi
echo "$venv/bin/python"
