# Sourced by DHHN_origin.sh and DHHN_refinement.sh (and by hand, see README): sets LLP_ROOT, the
# folder in the official layout (data/AVVP_*.csv, feats/{vggish,res152,r2plus1d_18}/) that
# main_DHHN.py reads with --llp_root "$LLP_ROOT". Unset, the synthetic LLP (the embedded default)
# is generated in data/synthetic on first use; SYNTHETIC_SIZE=tiny|demo|llp picks its size (default demo).
if [ -z "${LLP_ROOT:-}" ]; then
  LLP_ROOT=data/synthetic
  python scripts/make_synthetic_llp.py --out "$LLP_ROOT" --size "${SYNTHETIC_SIZE:-demo}"
fi
