"""Single home of the LLP / DHHN constants (PROTOCOL.md §1, §2).

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
# the two modalities, in the order of the modality axis of frame_prob (B, 10, 2, 25) (PROTOCOL.md §5)
MODALITIES = ("audio", "visual")

# feature kind -> (published folder name, per-video shape)
FEATURE_KINDS = {
    "audio": ("vggish", (NUM_SEGMENTS, 128)),
    "frames": ("res152", (NUM_SEGMENTS * FRAMES_PER_SEGMENT, 2048)),
    "snippets": ("r2plus1d_18", (NUM_SEGMENTS, 512)),
}

# Published annotation file names (PROTOCOL.md §2).
LABEL_TRAIN_CSV = "AVVP_train.csv"
LABEL_VAL_CSV = "AVVP_val_pd.csv"
LABEL_TEST_CSV = "AVVP_test_pd.csv"
LABEL_FULL_CSV = "AVVP_dataset_full.csv"
EVAL_AUDIO_CSV = "AVVP_eval_audio.csv"
EVAL_VISUAL_CSV = "AVVP_eval_visual.csv"
# columns of the label files and of the eval (segment truth) files (PROTOCOL.md §2)
LABEL_COLUMNS = ("filename", "event_labels")
EVAL_COLUMNS = ("filename", "onset", "offset", "event_labels")
# a filename is `<youtube id>_<start>_<end>`, the id its first 11 characters (PROTOCOL.md §2)
YOUTUBE_ID_LENGTH = 11
ANNOTATION_FILES = (LABEL_TRAIN_CSV, LABEL_VAL_CSV, LABEL_TEST_CSV, LABEL_FULL_CSV,
                    EVAL_AUDIO_CSV, EVAL_VISUAL_CSV)

# sha256 of the current published annotation files (PROTOCOL.md §2, ../shared/llp/SHA256SUMS); kept in
# code because the project must run without ../shared.
ANNOTATION_SHA256 = {
    LABEL_TRAIN_CSV: "bbeb83e8af46a85075216b213d3464f92dd4ab71468c852ae454b82cc745c0a4",
    LABEL_VAL_CSV: "1811813b54c5f43c3be0a97bd0971cfb8a93818ca7b3ab96cdc7f4ac37ef37a6",
    LABEL_TEST_CSV: "3f7a2b040e3b67c15d08efef25002bf8c5b2320f11049eb99ae0eb2d62f8eb9b",
    LABEL_FULL_CSV: "89f112ffc602279c87cc2b2040c4cd42eaf163a9d7e61cf4e74250a343d21e56",
    EVAL_AUDIO_CSV: "d5435664668bec6e7eafb39059d2f424ed2682f6b55395262fc3cb691b7d0778",
    EVAL_VISUAL_CSV: "e2274af694f3f27e38b840e0cd91a9d8d9ac85280f193e90828d26b22db69abe",
}
# The 2020 copy of the audio eval file (3 rows of 2 test videos have a broken filename;
# corrected upstream in 2024): accepted with a warning.
OLDER_ANNOTATION_SHA256 = {
    EVAL_AUDIO_CSV: "249122f65501d8d611c0027a48643798fe622bedee60f7e6224b5a8e3c02f886",
}

# Two files of the DHHN release (https://github.com/anonyUsr22/DHHN) that the published numbers
# depend on; scripts/download_llp.py fetches them into data/ beside the six annotation files. The
# URLs are pinned to the release's last commit (master, 2022-04-15); both files are unchanged since
# its first commit, and their sha256 are those of ../shared/llp/SHA256SUMS.
DHHN_RELEASE_COMMIT = "3df283ef48412fab95d3cc592e49b2c6bd88b321"
DHHN_RELEASE_BASE_URL = f"https://raw.githubusercontent.com/anonyUsr22/DHHN/{DHHN_RELEASE_COMMIT}/"
# The label-refinement flags that DHHN's "with label refinement" numbers were retrained on
# (PROTOCOL.md §10): made by the MA estimator (Wu & Yang, CVPR 2021), shipped by the DHHN release as
# `need_to_change.pkl` and kept here under a name that says whose flags they are. (The MA release
# ships no flags: its step3_retrain/need_to_change.pkl is a link to step 2's output, 41 bytes.) Use it
# with `--refined_labels`.
PUBLISHED_FLAGS_FILE = "need_to_change_MA.pkl"
PUBLISHED_FLAGS_RELEASE_PATH = "need_to_change.pkl"
PUBLISHED_FLAGS_SHA256 = "e646301861e8d29422e28cb76db5e9ae18176762786e11eacb0da651b4614d76"
PUBLISHED_FLAGS_URL = DHHN_RELEASE_BASE_URL + PUBLISHED_FLAGS_RELEASE_PATH
# The 2020 copy of AVVP_eval_audio.csv, with which the published numbers were scored (PROTOCOL.md §2);
# the DHHN release ships it as data/AVVP_eval_audio.csv. Kept under its own name beside the current
# copy, which stays the default eval file; use it with `--eval_audio_csv`.
EVAL_AUDIO_2020_CSV = "AVVP_eval_audio_2020.csv"
EVAL_AUDIO_2020_RELEASE_PATH = "data/AVVP_eval_audio.csv"
EVAL_AUDIO_2020_SHA256 = OLDER_ANNOTATION_SHA256[EVAL_AUDIO_CSV]
EVAL_AUDIO_2020_URL = DHHN_RELEASE_BASE_URL + EVAL_AUDIO_2020_RELEASE_PATH
# The two together: kept name -> sha256, -> path in the release, -> the names a local folder may
# hold it under (the kept name first, then the published ones; ../shared/llp uses
# AVVP_eval_audio_2020_with_defects.csv).
REPRODUCTION_FILES = (PUBLISHED_FLAGS_FILE, EVAL_AUDIO_2020_CSV)
REPRODUCTION_SHA256 = {PUBLISHED_FLAGS_FILE: PUBLISHED_FLAGS_SHA256, EVAL_AUDIO_2020_CSV: EVAL_AUDIO_2020_SHA256}
REPRODUCTION_RELEASE_PATHS = {PUBLISHED_FLAGS_FILE: PUBLISHED_FLAGS_RELEASE_PATH,
                              EVAL_AUDIO_2020_CSV: EVAL_AUDIO_2020_RELEASE_PATH}
REPRODUCTION_SOURCE_NAMES = {
    PUBLISHED_FLAGS_FILE: (PUBLISHED_FLAGS_FILE, PUBLISHED_FLAGS_RELEASE_PATH),
    EVAL_AUDIO_2020_CSV: (EVAL_AUDIO_2020_CSV, "AVVP_eval_audio_2020_with_defects.csv"),
}

# VALOR's layout (Franklin905/VALOR, NeurIPS 2023; PROTOCOL.md §13): CLIP frame features, CLAP audio
# feature maps and per-segment pseudo-labels, one `<youtube id>.npy` per video, in two folders beside
# feats/ under the LLP root. The Hugging Face dataset ships each set as one zip.
VALOR_SETS = ("CLIP", "CLAP")                       # visual, audio
VALOR_FEATURES_FOLDER = "features"
VALOR_PSEUDO_LABELS_FOLDER = "segment_pseudo_labels"
VALOR_SET_MODALITY = {"CLIP": "visual", "CLAP": "audio"}
CLIP_FEATURE_SHAPE = (NUM_SEGMENTS, 768)            # one frame vector per segment
CLAP_FEATURE_SHAPE = (64, 768)                      # feature maps; 10 segment vectors at load (PROTOCOL.md §13)
PSEUDO_LABEL_SHAPE = (NUM_SEGMENTS, NUM_CLASSES)    # segment x class, values 0 or 1
VALOR_HF_REPO = "NTUBarista/valor_features"         # a Hugging Face *dataset* repository
VALOR_ARCHIVES = {name: f"{name}.zip" for name in VALOR_SETS}
