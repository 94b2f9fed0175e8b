#!/bin/sh
# VALOR (Lai et al., NeurIPS 2023) through this project: the HAN network with pseudo-labels under
# VALOR's published recipe (its scripts/train_valor.sh; PROTOCOL.md §13): 8 heads, feed-forward 1024,
# sequential update, the global video-level loss plus the segment loss, AdamW (wd 1e-3, betas
# (0.5, 0.999)), 10 warm-up epochs then a cosine to 1e-6, gradient norm 1.0, 60 epochs, batch 64,
# lr 1e-4. Then the test under the HAN decision rule. Real LLP:
#   python scripts/download_valor_features.py --llp_root path/to/llp
#   LLP_ROOT=path/to/llp sh VALOR.sh                     # VALOR: VGGish / ResNet152 / R(2+1)D
#   LLP_ROOT=path/to/llp FEATURES=clip_clap sh VALOR.sh \\            # VALOR++, with these extra flags
#     --lr 3e-4 --lr_min 3e-6 --hidden_dim 256 --num_layers 4 --seed 87    (extra flags go to both steps)
# VALOR's own scripts also run unchanged with main_DHHN.py as the entry point (--model MMIL_Net).
set -e
. "$(dirname "$0")/scripts/pseudo_paths.sh"   # LLP_ROOT, PSEUDO_FLAGS, FEATURE_FLAGS; moves to the repository
VALOR_NETWORK="--model han --hidden_dim 512 --nhead 8 --ff_dim 1024 --num_layers 1 --han_update sequential"
VALOR_TRAINING="--weak_loss global --optimizer adamw --weight_decay 1e-3 --beta1 0.5 --eps 1e-8
  --scheduler warm_up_cos_anneal --warm_up_epoch 10 --grad_norm 1.0 --lr 1e-4 --lr_min 1e-6 --epochs 60 --batch-size 64"
# shellcheck disable=SC2086  # the flag strings are meant to split into words
python main_DHHN.py --mode train --llp_root "$LLP_ROOT" $VALOR_NETWORK $VALOR_TRAINING $FEATURE_FLAGS $PSEUDO_FLAGS \
  --seed 1000 --model_save_dir models/ --checkpoint VALOR "$@"
# shellcheck disable=SC2086
python main_DHHN.py --mode test --llp_root "$LLP_ROOT" $VALOR_NETWORK $FEATURE_FLAGS \
  --model_save_dir models/ --checkpoint VALOR "$@"
