#!/usr/bin/env bash
# Print the path of a Python >= 3.12 interpreter, or explain what to install and exit 1.
# Order: $PYTHON if set, python3.13 / python3.12 on PATH (if they run), pyenv's installed
# 3.12+ versions (newest 3.12 first, as the pins were made on 3.12), then python3.
set -u
ok() { "$@" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
if [ -n "${PYTHON:-}" ]; then
  if ok "$PYTHON"; then command -v "$PYTHON" || echo "$PYTHON"; exit 0; fi
  echo "error: PYTHON=$PYTHON is not a working Python >= 3.12" >&2; exit 1
fi
for c in python3.12 python3.13 python3.14; do
  if ok "$c"; then command -v "$c"; exit 0; fi
done
root="${PYENV_ROOT:-$HOME/.pyenv}"
if command -v pyenv >/dev/null 2>&1; then root="$(pyenv root 2>/dev/null || echo "$root")"; fi
for d in $(ls -d "$root"/versions/3.12* "$root"/versions/3.1[3-9]* 2>/dev/null); do
  if ok "$d/bin/python3"; then echo "$d/bin/python3"; exit 0; fi
done
if ok python3; then command -v python3; exit 0; fi
echo "error: alignjax needs Python >= 3.12 (jax >= 0.11 requires it) and none was found." >&2
echo "       Install one (e.g. 'pyenv install 3.12' or your OS package python3.12), or run 'make PYTHON=/path/to/python3.12 ...'." >&2
exit 1
