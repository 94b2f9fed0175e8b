#!/bin/sh
# VALOR (Lai et al., NeurIPS 2023) through this project: the HAN network with segment pseudo-labels
# under VALOR's published recipe (PROTOCOL.md §13), then the test under the HAN decision rule.
# The recipe is read from configs/$CONFIG.flags: CONFIG=valor (default; VGGish / ResNet152 /
# R(2+1)D features), valor_plus (256 wide, 4 layers), valor_plus_plus (valor_plus's recipe on CLAP /
# CLIP features: FEATURES=clip_clap is then the default). Real LLP:
#   python scripts/download_valor_features.py --llp_root path/to/llp
#   LLP_ROOT=path/to/llp sh VALOR.sh
#   LLP_ROOT=path/to/llp CONFIG=valor_plus_plus sh VALOR.sh
# Extra flags go to both steps. VALOR's own scripts also run unchanged with main_DHHN.py as the entry
# point (--model MMIL_Net). Checkpoints: models/<CONFIG>_*.
set -e
CONFIG=${CONFIG:-valor}
[ "$CONFIG" != valor_plus_plus ] || FEATURES=${FEATURES:-clip_clap}
. "$(dirname "$0")/scripts/pseudo_paths.sh"   # LLP_ROOT, PSEUDO_FLAGS, FEATURE_FLAGS; moves to the repository
TRAIN_FLAGS=$(python scripts/published_flags.py "$CONFIG" --mode train)
TEST_FLAGS=$(python scripts/published_flags.py "$CONFIG" --mode test)
# shellcheck disable=SC2086  # the flag strings are meant to split into words
python main_DHHN.py --mode train --llp_root "$LLP_ROOT" $TRAIN_FLAGS $FEATURE_FLAGS $PSEUDO_FLAGS \
  --model_save_dir models/ --checkpoint "$CONFIG" --unused_flags note "$@"
# shellcheck disable=SC2086
python main_DHHN.py --mode test --llp_root "$LLP_ROOT" $TEST_FLAGS $FEATURE_FLAGS \
  --model_save_dir models/ --checkpoint "$CONFIG" --unused_flags note "$@"
