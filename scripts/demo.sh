#!/usr/bin/env bash
# The demo behind `make demo`: every user-visible stage of dasc, run on the shipped spaces.
#
# Each stage is a plain `dasc ...` command line, echoed before it runs, so the demo doubles as
# a tour of the CLI. To add a stage (search, derive, train, export...), add a section that calls
# `step dasc ...`; keep outputs under "$OUT" and keep the whole demo to a few minutes on a CPU.
#
# Environment: DASC (how to run dasc; default `.venv/bin/python -m dasc`), OUT (default demo-out).
set -euo pipefail

cd "$(dirname "$0")/.."
DASC=${DASC:-.venv/bin/python -m dasc}
OUT=${OUT:-demo-out}
mkdir -p "$OUT"

step() {
  # Print the command as a user would type it, then run it with the project's interpreter.
  local shown=("$@")
  shown[0]=dasc
  printf '\n$ %s\n' "${shown[*]}"
  shift
  $DASC "$@"
}

shopt -s nullglob
spaces=(spaces/*.das)
if [ ${#spaces[@]} -eq 0 ]; then
  echo "demo: no spaces in spaces/ yet" >&2
  exit 1
fi

echo "== compile and render every shipped space into $OUT/"
for space in "${spaces[@]}"; do
  name=$(basename "$space" .das)
  step dasc compile "$space" -o "$OUT/$name.ir.json"
  step dasc render "$space" -o "$OUT/$name.svg"
done

# == search, derive, train, export: added here as those stages land.

echo
echo "demo: done; outputs are in $OUT/"
