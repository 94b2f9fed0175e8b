"""The run's frozen configuration (config.py): resolved once, recorded, compared field by field, and
the published configurations of configs/ read the same way by the shell scripts and the sweep."""
import dataclasses
import re
import subprocess
import sys

import pytest

from config import (
    FIELD_OF_FLAG,
    SECTIONS,
    Config,
    acts_in,
    changed_fields,
    published_flags,
    recorded_flags,
    resolve_config,
)
from conftest import REPO_ROOT
from main_DHHN import get_args_parser, given_flags
from utils.errors import UsageError


def resolve(*argv):
    parser = get_args_parser()
    args = parser.parse_args(list(argv))
    return resolve_config(args, given_flags(parser, args))


def test_every_flag_has_exactly_one_field_and_the_namespace_is_left_alone():
    parser = get_args_parser()
    dests = {action.dest for action in parser._actions if action.option_strings and action.dest != "help"}
    assert dests == set(FIELD_OF_FLAG)
    fields = [(section, field.name) for section, cls in SECTIONS.items() for field in dataclasses.fields(cls)]
    assert sorted(FIELD_OF_FLAG.values()) == sorted(fields)
    args = parser.parse_args(["--model", "MMIL_Net"])
    before = dict(vars(args))
    config = resolve_config(args)
    assert vars(args) == before   # resolution works on a copy
    assert config.model.name == "han" and config.optim.weak_loss == "global" and config.model.han_update == "sequential"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optim.lr = 1.0


def test_the_record_round_trips_and_old_flat_records_still_read():
    config = resolve("--lr", "1e-3", "--no_rmse")
    recorded = config.as_dict()
    assert recorded["optim"]["lr_visual_mgn"] == pytest.approx(2e-4) and recorded["model"]["rmse"] is False
    assert recorded_flags({"config": recorded}) == config.flags()
    assert Config.from_flags(config.flags()) == dataclasses.replace(config, given=())
    # a checkpoint written before configs were recorded holds the namespace as "args"
    assert recorded_flags({"args": {"lr": 0.5, "model": "han"}}) == {"lr": 0.5, "model": "han"}


def test_changes_are_named_by_section_and_field():
    recorded = resolve("--lr", "1e-3").flags()
    changes = changed_fields(recorded, resolve("--lr", "2e-3", "--seed", "3"))
    assert changes == ["optim.lr 0.001 -> 0.002", "optim.lr_audio_mgn 0.002 -> 0.004",
                       "optim.lr_visual_mgn 0.0002 -> 0.0004", "run.seed 1 -> 3"]
    assert changed_fields(recorded, resolve("--lr", "2e-3"), ignore=("lr", "lr_audio_mgn", "lr_visual_mgn")) == []


def test_the_console_gets_the_given_flags_as_typed():
    from modes.common import format_flags
    config = resolve("--epochs", "3", "--lr_visual_mgn", "6e-05", "--no_rmse", "--batch_size", "8")
    assert format_flags(config.given) == "--batch-size 8 --epochs 3 --lr_visual_mgn 6e-05 --no_rmse"
    # a derived value keeps full precision in the record
    assert resolve().optim.lr_visual_mgn == 0.2 * 3e-4 and repr(0.2 * 3e-4) == "5.9999999999999995e-05"


def test_help_shows_each_default_once():
    text = " ".join(get_args_parser().format_help().split())   # unwrapped
    assert "(default: None)" not in text and text.count("(default: <llp_root>/feats/vggish)") == 1
    assert "--seed SEED random seed (PROTOCOL.md §7) (default: 1) --device" in text
    parser = get_args_parser()
    formatter = parser._get_formatter()
    helps = {action.dest: formatter._get_help_string(action) for action in parser._actions}
    assert [dest for dest, text in helps.items() if text.count("default") > 1] == []


# ------------------------------------------------------------------------------------------------
# published configurations

VALOR_TRAIN = ["--model", "han", "--weak_loss", "global", "--han_update", "sequential", "--hidden_dim", "512",
               "--nhead", "8", "--ff_dim", "1024", "--num_layers", "1", "--optimizer", "adamw", "--weight_decay",
               "1e-3", "--beta1", "0.5", "--eps", "1e-8", "--scheduler", "warm_up_cos_anneal", "--warm_up_epoch",
               "10", "--grad_norm", "1.0", "--lr", "1e-4", "--lr_min", "1e-6", "--epochs", "60", "--batch-size",
               "64", "--seed", "1000"]


def test_valors_published_configuration_per_mode():
    parser = get_args_parser()
    # VALOR's scripts/train_valor.sh, in this project's flag names
    assert published_flags("valor", "train", parser) == VALOR_TRAIN
    # at test only the network (and the run's seed) act: what VALOR's test scripts pass
    assert published_flags("valor", "test", parser) == ["--model", "han", "--han_update", "sequential",
                                                       "--hidden_dim", "512", "--nhead", "8", "--ff_dim", "1024",
                                                       "--num_layers", "1", "--seed", "1000"]
    assert "--seed" not in published_flags("valor", "train", parser, leave_out=("--seed",))
    plus = published_flags("valor_plus_plus", "train", parser)
    assert plus[plus.index("--hidden_dim") + 1] == "256" and plus[plus.index("--num_layers") + 1] == "4"
    assert plus[plus.index("--lr") + 1] == "3e-4" and plus[plus.index("--seed") + 1] == "87"
    # the files resolve into the recipe they describe
    config = resolve(*published_flags("valor_plus", "train", parser))
    assert (config.model.hidden_dim, config.optim.lr_min, config.run.seed) == (256, 3e-6, 64)
    with pytest.raises(UsageError, match=re.escape("no published configuration 'valor+'")):
        published_flags("valor+", "train", parser)


def test_the_shell_scripts_read_the_same_file():
    result = subprocess.run([sys.executable, "scripts/published_flags.py", "valor", "--mode", "train"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == VALOR_TRAIN
    with open(f"{REPO_ROOT}/VALOR.sh") as handle:
        script = handle.read()
    assert "scripts/published_flags.py" in script and "--weight_decay" not in script


def test_which_flag_acts_in_which_mode():
    assert acts_in("lr", "train") and not acts_in("lr", "test")
    assert acts_in("hidden_dim", "test") and acts_in("audio_dir", "estimate_labels")
    assert acts_in("refined_labels", "retrain") and not acts_in("refined_labels", "train")
    assert acts_in("export_dir", "val") and not acts_in("export_dir", "train")
