#!/bin/sh
# DHHN with modality-aware label refinement (SPEC §10): train a first model, estimate which labels
# are wrong by modality swapping, retrain with refined targets, test the dual-stream model.
# REFINED_LABELS=path/to/flags.pkl skips the first two steps (e.g. the published need_to_change_MA.pkl).
# Checkpoints go to models/refinement/ and never collide with DHHN_origin.sh.
set -e
. scripts/llp_paths.sh
SAVE_DIR=models/refinement
if [ -z "${REFINED_LABELS:-}" ]; then
  python main_DHHN.py --mode train $DATA_FLAGS --model_save_dir $SAVE_DIR --checkpoint DHHN_stage1 "$@"
  python main_DHHN.py --mode estimate_labels $DATA_FLAGS --model_save_dir $SAVE_DIR --checkpoint DHHN_stage1 "$@"
  REFINED_LABELS=$SAVE_DIR/DHHN_stage1_refined_labels.pkl
fi
python main_DHHN.py --mode retrain --refined_labels "$REFINED_LABELS" $DATA_FLAGS --model_save_dir $SAVE_DIR --checkpoint DHHN_refined "$@"
python main_DHHN.py --mode test $DATA_FLAGS --model_save_dir $SAVE_DIR --checkpoint DHHN_refined "$@"
