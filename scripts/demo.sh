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
rm -rf "$OUT"  # the demo's own output folder, rebuilt on every run
mkdir -p "$OUT"

step() {
  # Print the command as a user would type it, then run it with the project's interpreter.
  local shown=("$@")
  shown[0]=dasc
  printf '\n$ %s\n' "${shown[*]}" >&2
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

echo
echo "== the whole story on the bundled digits: search -> derive -> train -> export -> render"
step dasc search spaces/digits.das --data digits --seed 0 -o "$OUT/search" --json > "$OUT/search.json"
step dasc derive spaces/digits.das --run "$OUT/search" -o "$OUT/arch.json"
step dasc train spaces/digits.das --arch "$OUT/arch.json" --data digits -o "$OUT/train" --json > "$OUT/train.json"
step dasc export spaces/digits.das --arch "$OUT/arch.json" --weights "$OUT/train" -o "$OUT/digits.onnx" --json > "$OUT/export.json"
step dasc render spaces/digits.das --arch "$OUT/arch.json" -o "$OUT/digits-arch.svg"
step dasc render spaces/digits.das --run "$OUT/search" -o "$OUT/digits-alpha.svg"

echo
PY=${PY:-.venv/bin/python}
$PY - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
search = json.load(open(f"{out}/search.json"))
train = json.load(open(f"{out}/train.json"))
export = json.load(open(f"{out}/export.json"))
arch = json.load(open(f"{out}/arch.json"))
ops = sorted(set(arch["choices"].values()))
print("== summary")
print(f"  architecture       {len(arch['choices'])} choices: {', '.join(ops)}  ({out}/arch.json)")
print(f"  search             supernet test acc {search['supernet_test_acc']:.3f}; derived with inherited"
      f" weights {search['derived_test_acc_inherited']:.3f}; discretization gap {search['discretization_gap']:+.3f}")
print(f"  retrained          test acc {train['test_acc']:.3f}; {train['params']:,} params; {train['macs']:,} MACs")
diff = max(export.get('max_abs_diff', {}).values()) if isinstance(export.get('max_abs_diff'), dict) else export.get('max_abs_diff')
print(f"  ONNX               {export.get('path', out + '/digits.onnx')} (onnxruntime max |diff| {diff})")
print(f"  pictures           {out}/digits-arch.svg, {out}/digits-alpha.svg, {out}/search/alpha.png")
PYEOF
echo "demo: done; outputs are in $OUT/"
