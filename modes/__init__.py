"""What each --mode of main_DHHN.py does, one module per job: train.py (train, retrain),
evaluate.py (val, test), estimate_labels.py; common.py holds what they share (inputs, records,
loading a selected checkpoint). Model-specific answers come from the recipe of --model."""
