# Sourced by DHHN_origin.sh and DHHN_refinement.sh: sets DATA_FLAGS for the LLP root in LLP_ROOT.
# LLP_ROOT holds data/AVVP_*.csv and feats/{vggish,res152,r2plus1d_18}/ (the official layout).
# Unset, the synthetic LLP (the embedded default) is generated in data/synthetic on first use;
# SYNTHETIC_SIZE=tiny|demo|llp picks its size (default demo).
if [ -z "${LLP_ROOT:-}" ]; then
  LLP_ROOT=data/synthetic
  python scripts/make_synthetic_llp.py --out "$LLP_ROOT" --size "${SYNTHETIC_SIZE:-demo}"
fi
DATA_FLAGS="--audio_dir $LLP_ROOT/feats/vggish/ --video_dir $LLP_ROOT/feats/res152/ --st_dir $LLP_ROOT/feats/r2plus1d_18/ \
--label_train $LLP_ROOT/data/AVVP_train.csv --label_val $LLP_ROOT/data/AVVP_val_pd.csv --label_test $LLP_ROOT/data/AVVP_test_pd.csv \
--eval_audio_csv $LLP_ROOT/data/AVVP_eval_audio.csv --eval_visual_csv $LLP_ROOT/data/AVVP_eval_visual.csv"
