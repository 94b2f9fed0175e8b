#!/bin/sh
# DHHN (its published settings, PROTOCOL.md §7) trained with segment pseudo-labels (the segment
# loss of PROTOCOL.md §13 on the HCMN), then the dual-stream test. Real LLP:
#   python scripts/download_valor_features.py --llp_root path/to/llp
#   LLP_ROOT=path/to/llp sh DHHN_pseudo.sh                      # VGGish / ResNet152 / R(2+1)D features
#   LLP_ROOT=path/to/llp FEATURES=clip_clap sh DHHN_pseudo.sh   # CLAP / CLIP / R(2+1)D features
# Pseudo-labels: PSEUDO_ROOT (default LLP_ROOT) in VALOR's layout (scripts/pseudo_paths.sh). Extra
# flags go to both steps (e.g. --pseudo_mgn, --pseudo_weight 0.5). Checkpoints: models/DHHN_pseudo_*.
set -e
. "$(dirname "$0")/scripts/pseudo_paths.sh"   # LLP_ROOT, PSEUDO_FLAGS, FEATURE_FLAGS; moves to the repository
# shellcheck disable=SC2086  # the flag strings are meant to split into words
python main_DHHN.py --mode train --model dhhn --llp_root "$LLP_ROOT" $FEATURE_FLAGS $PSEUDO_FLAGS \
  --model_save_dir models/ --checkpoint DHHN_pseudo --unused_flags note "$@"
# shellcheck disable=SC2086
python main_DHHN.py --mode test --model dhhn --llp_root "$LLP_ROOT" $FEATURE_FLAGS \
  --model_save_dir models/ --checkpoint DHHN_pseudo --unused_flags note "$@"
