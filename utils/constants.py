"""Single home of the LLP / DHHN constants (SPEC §1, §2).

Everything that names a class, a segment count, a feature shape or a published
file name is imported from here; nothing else in the project spells them out.
"""

CLASSES = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce",
    "Fire_alarm", "Chainsaw", "Cello", "Banjo", "Singing", "Chicken_rooster",
    "Violin_fiddle", "Vacuum_cleaner", "Baby_laughter", "Accordion", "Lawn_mower",
    "Motorcycle", "Helicopter", "Acoustic_guitar", "Telephone_bell_ringing",
    "Baby_cry_infant_cry", "Blender", "Clapping",
)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
NUM_CLASSES = len(CLASSES)
NUM_SEGMENTS = 10
FRAMES_PER_SEGMENT = 8

# feature kind -> (published folder name, per-video shape)
FEATURE_KINDS = {
    "audio": ("vggish", (NUM_SEGMENTS, 128)),
    "frames": ("res152", (NUM_SEGMENTS * FRAMES_PER_SEGMENT, 2048)),
    "snippets": ("r2plus1d_18", (NUM_SEGMENTS, 512)),
}

# Published annotation file names (SPEC §2).
LABEL_TRAIN_CSV = "AVVP_train.csv"
LABEL_VAL_CSV = "AVVP_val_pd.csv"
LABEL_TEST_CSV = "AVVP_test_pd.csv"
LABEL_FULL_CSV = "AVVP_dataset_full.csv"
EVAL_AUDIO_CSV = "AVVP_eval_audio.csv"
EVAL_VISUAL_CSV = "AVVP_eval_visual.csv"
ANNOTATION_FILES = (LABEL_TRAIN_CSV, LABEL_VAL_CSV, LABEL_TEST_CSV, LABEL_FULL_CSV,
                    EVAL_AUDIO_CSV, EVAL_VISUAL_CSV)

# Metric keys: "<level>_<column>", level in LEVELS, column in TABLE_COLUMNS (SPEC §9).
LEVELS = ("seg", "evt")
LEVEL_TITLES = {"seg": "Seg.", "evt": "Eve."}
TABLE_COLUMNS = ("audio", "visual", "av", "type", "event")
COLUMN_TITLES = {"audio": "Audio", "visual": "Visual", "av": "Audio-Visual",
                 "type": "Type@AV", "event": "Event@AV"}
