#!/usr/bin/env bash
# Train, evaluate and install the shipped learned models (carve/models/*.pt and MODEL_CARD.md).
# Run from the repository root on a quiet machine: bash scripts/train_models.sh [STAGE ...]
# Stages: depth eval_depth silhouette eval_silhouette pretrain install (default: all, in that order).
# Outputs go to $RUNS (default runs/): <name>/{model.pt,last.pt,best.pt,history.json,curves.png}, logs
# in $RUNS/logs; renders are cached in $RUNS/scene-cache. A stage cut off continues with the same
# command plus --resume $RUNS/<name>/last.pt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
R=${RUNS:-runs}
L=$R/logs
CACHE=$R/scene-cache
mkdir -p "$L"
COMMON=(--size 128 --train 4000 --val 200 --batch-size 16 --scale-min 0.5 --seed 0 --threads 2 --cache-dir "$CACHE")

depth() {  # 128 px crops of 256 px renders: about 3 min of rendering and 25 min of training on 2 quiet cores
  $PY -m carve.depth --out "$R/depth_default" "${COMMON[@]}" --render-size 256 --widths 8,16,32,64,128 \
    --context-size 64 --epochs 22 --lr 2e-3 > "$L/depth.log" 2>&1
}
eval_depth() {  # the model against the training set's mean depth map, at 128, 256 and 384 px
  $PY benchmarks/eval_depth.py --model shipped="$R/depth_default/model.pt" --n 200 --scales 1,2,3 --cache-dir "$CACHE" \
    --speed --threads 2 --json "$R/depth_default/eval.json" > "$R/depth_default/eval.txt" 2> "$L/eval_depth.log"
}
silhouette() {  # renders the train scenes at 128 px (1 min), then 8-12 min
  $PY -m carve.segmentation.network --out "$R/silhouette_default" "${COMMON[@]}" --widths 8,16,32,64,128 \
    --context-size 64 --epochs 10 --lr 2e-3 > "$L/silhouette.log" 2>&1
}
eval_silhouette() {  # IoU on the 36 bunny photographs of ../shared, beside the classical methods
  $PY benchmarks/eval_silhouettes.py --model "$R/silhouette_default/model.pt" --methods learned,otsu,color,auto \
    --save "$R/silhouette_default/bunny_sheet.png" > "$R/silhouette_default/bunny.txt" 2> "$L/eval_silhouette.log"
}
pretrain() {  # rotation pretraining against scratch, on the same 10% of the labels
  $PY -m carve.depth --out "$R/depth_scratch10" "${COMMON[@]}" --label-fraction 0.1 --epochs 40 > "$L/scratch10.log" 2>&1
  $PY -m carve.depth --out "$R/depth_rotation10" "${COMMON[@]}" --label-fraction 0.1 --epochs 40 \
    --pretrain rotation --pretrain-epochs 4 > "$L/rotation10.log" 2>&1
  $PY benchmarks/eval_depth.py --model rotation-pretrained-10%="$R/depth_rotation10/model.pt" \
    --model scratch-10%="$R/depth_scratch10/model.pt" --n 200 --cache-dir "$CACHE" --scales 1 \
    > "$R/depth_rotation10/compare.txt" 2> "$L/eval_pretrain.log"
}
install() {  # copy the weights into the package and write the model card
  cp "$R/depth_default/model.pt" carve/models/depth_default.pt
  cp "$R/silhouette_default/model.pt" carve/models/silhouette_default.pt
  {
    echo "# Shipped models"
    echo
    echo "Both are trained only on this package's procedural renders (\`data.scenes\`): no downloaded data or"
    echo "weights. They load with \`torch.load(weights_only=True)\`. Reproduce with \`bash scripts/train_models.sh\`."
    echo
    $PY -m carve.learn.card carve/models/depth_default.pt --evaluation "$R/depth_default/eval.txt"
    $PY -m carve.learn.card carve/models/silhouette_default.pt --evaluation "$R/silhouette_default/bunny.txt"
    if [ -f "$R/depth_rotation10/compare.txt" ]; then
      echo "## Representation learning: rotation pretraining against scratch, 10% of the labels"
      echo; echo '```'; cat "$R/depth_rotation10/compare.txt"; echo '```'
    fi
  } > carve/models/MODEL_CARD.md
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(depth eval_depth silhouette eval_silhouette pretrain install)
mkdir -p carve/models
for stage in "${stages[@]}"; do
  case $stage in
    depth|eval_depth|silhouette|eval_silhouette|pretrain|install) echo "== $stage $(date)"; $stage ;;
    *) echo "unknown stage $stage (depth eval_depth silhouette eval_silhouette pretrain install)" >&2; exit 2 ;;
  esac
done
