"""The models other codebases trained on the real LLP and published load and score as their own code
scores them: VALOR's three checkpoints through VALOR's own test scripts with only the entry point
replaced (the numbers VALOR's main_avvp.py printed for the same folder: tests/golden/
valor_release.json), HAN's MMIL_Net.pt with HAN's gate; scripts/download_models.py installs them and
refuses files of another network."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT, run_main
from nets import build_han, default_feature_dims
from nets.convert import han_to_release
from recipes.releases import RELEASES
from scripts import download_models
from utils.eval_metrics import METRIC_KEYS
from valor_release_fixtures import VALOR_RELEASES, make_valor_folder, valor_state_dict, valor_test_command

pytestmark = pytest.mark.e2e
GOLDEN = os.path.join(REPO_ROOT, "tests", "golden", "valor_release.json")
# VALOR scores videos one by one, this project in batches: equal up to float rounding, which can
# flip a segment whose probability sits at the threshold; VALOR prints two decimals
TOLERANCE = 0.1


@pytest.fixture(scope="module")
def valor_folder(tmp_path_factory):
    return make_valor_folder(str(tmp_path_factory.mktemp("valor_layout")))


@pytest.mark.parametrize("release", list(VALOR_RELEASES))
def test_valors_test_scripts_print_valors_numbers(valor_folder, release):
    command = valor_test_command(release, [sys.executable, os.path.join(REPO_ROOT, "main_DHHN.py")])
    result = subprocess.run(command + ["--progress", "off"], cwd=valor_folder, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    # the pseudo-label folders VALOR's test scripts pass are said to be unused, not refused
    assert "--audio_pseudo_dir: not used by --mode test" in result.stdout
    with open(os.path.join(valor_folder, "models", f"{release}_test_summary.json")) as handle:
        table = next(iter(json.load(handle)["tables"].values()))
    with open(GOLDEN) as handle:
        expected = json.load(handle)[release]
    assert [100 * table[key] for key in METRIC_KEYS] == pytest.approx(expected, abs=TOLERANCE)


def test_a_release_file_with_other_sizes_than_the_flags_is_refused_naming_both(valor_folder, tmp_path, capsys):
    # VALOR+'s file scored with VALOR's flags (512 wide, 1 layer)
    command = valor_test_command("model_VALOR", ["python", "main_DHHN.py"])[2:]
    folder = tmp_path / "models" / "model_VALOR"
    folder.mkdir(parents=True)
    os.symlink(os.path.join(valor_folder, "models", "model_VALOR+", "checkpoint_best.pt"),
               folder / "checkpoint_best.pt")
    argv = [os.path.join(valor_folder, word[2:]) if word.startswith("./") else word for word in command]
    with pytest.raises(SystemExit):
        run_main(argv + ["--llp_root", valor_folder, "--model_save_dir", str(tmp_path / "models"), "--progress", "off"])
    err = capsys.readouterr().err
    assert "holds a network of --hidden_dim 256 --num_layers 4; the flags build --hidden_dim 512 --num_layers 1" in err


def test_hans_release_file_scores_as_the_same_weights_in_this_projects_format(valor_folder, tmp_path):
    torch.manual_seed(0)
    model = build_han(default_feature_dims()).eval()
    models = tmp_path / "models"
    models.mkdir()
    # as HAN's release saves it: with its unused encoders
    torch.save(han_to_release(model.state_dict(), with_unused_encoders=True), models / "MMIL_Net.pt")
    data = ["--llp_root", str(tmp_path), "--audio_dir", f"{valor_folder}/data/feats/vggish",
            "--video_dir", f"{valor_folder}/data/feats/res152", "--st_dir", f"{valor_folder}/data/feats/r2plus1d_18"]
    labels = [f"--label_{split}" for split in ("train", "val", "test")]
    for flag, name in zip(labels, ("AVVP_train.csv", "AVVP_val_pd.csv", "AVVP_test_pd.csv")):
        data += [flag, f"{valor_folder}/data/{name}"]
    data += ["--eval_audio_csv", f"{valor_folder}/data/AVVP_eval_audio.csv",
             "--eval_visual_csv", f"{valor_folder}/data/AVVP_eval_visual.csv", "--progress", "off", "--no-log"]
    released = run_main(data + ["--mode", "test", "--model", "han", "--model_save_dir", str(models),
                                "--checkpoint", "MMIL_Net"])
    ours = tmp_path / "ours"
    ours.mkdir()
    own_format = {"model_name": "han", "feature_dims": default_feature_dims()}
    torch.save({"model": model.state_dict(), "model_config": own_format}, ours / "HAN_best_overall.pt")
    own = run_main(data + ["--mode", "test", "--model", "han", "--model_save_dir", str(ours), "--checkpoint", "HAN"])
    assert list(released["tables"].values()) == list(own["tables"].values())


# ------------------------------------------------------------------------------------------------
# scripts/download_models.py

def han_release_file(path):
    torch.manual_seed(1)
    torch.save(han_to_release(build_han(default_feature_dims()).state_dict(), with_unused_encoders=True), path)
    return path


def test_download_from_a_folder_installs_every_release_with_its_record(valor_folder, tmp_path, monkeypatch):
    source = tmp_path / "source"
    for release in ("model_VALOR", "model_VALOR+", "model_VALOR++"):
        (source / release).mkdir(parents=True)
        os.link(os.path.join(valor_folder, "models", release, "checkpoint_best.pt"),
                source / release / "checkpoint_best.pt")
    han = han_release_file(source / "MMIL_Net.pt")
    # the synthetic stand-in is not HAN's published file: vouch for it by its own git blob id
    monkeypatch.setitem(download_models.RELEASES, "HAN",
                        dataclasses.replace(RELEASES["HAN"], git_blob=download_models.git_blob_id(han)))
    models = tmp_path / "models"
    installed = download_models.main(download_models.get_args_parser().parse_args(
        ["--from", str(source), "--models_dir", str(models)]))
    assert installed == ["VALOR", "VALOR+", "VALOR++", "HAN"]
    with open(models / "model_VALOR++" / "checkpoint_best.pt.release.json") as handle:
        record = json.load(handle)
    assert record["sha256"] == download_models.file_sha256(str(models / "model_VALOR++" / "checkpoint_best.pt"))
    assert record["features"] == "clip_clap" and record["checkpoint"] == "model_VALOR++"
    assert record["network_flags"] == ["--model", "han", "--han_update", "sequential", "--hidden_dim", "256",
                                       "--nhead", "8", "--ff_dim", "1024", "--num_layers", "4"]
    assert (models / "MMIL_Net.pt").is_file() and (models / "MMIL_Net.pt.release.json").is_file()


def refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        download_models.main(download_models.get_args_parser().parse_args(argv))
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return exit_info.value.code, err


def test_download_refuses_files_of_another_network_before_installing_any(valor_folder, tmp_path, capsys):
    source, models = tmp_path / "source", tmp_path / "models"
    (source / "model_VALOR").mkdir(parents=True)
    (source / "model_VALOR+").mkdir()
    state_dict = valor_state_dict(0, 512, 1)
    state_dict["extra.weight"] = torch.zeros(1)
    del state_dict["fc_prob.bias"]
    torch.save(state_dict, source / "model_VALOR" / "checkpoint_best.pt")
    torch.save(valor_state_dict(1, 256, 4), source / "model_VALOR+" / "checkpoint_best.pt")
    code, err = refused(["VALOR+", "VALOR", "--from", str(source), "--models_dir", str(models)], capsys)
    assert code == 2 and "model_VALOR/checkpoint_best.pt: not VALOR's network" in err
    assert "missing key(s) ['fc_prob.bias']" in err and "unexpected key(s) ['extra.weight']" in err
    assert not models.exists()   # VALOR+ was fine, but nothing is installed when one file is refused
    # VALOR+'s file offered as VALOR's: the sizes say so
    os.replace(source / "model_VALOR+" / "checkpoint_best.pt", source / "model_VALOR" / "checkpoint_best.pt")
    code, err = refused(["VALOR", "--from", str(source), "--models_dir", str(models)], capsys)
    assert "a network of {'hidden_dim': 256, 'ff_dim': 1024, 'num_layers': 4}, VALOR's is" in err
    # HAN's file is checked by the blob id its repository records
    han_release_file(source / "MMIL_Net.pt")
    code, err = refused(["HAN", "--from", str(source), "--models_dir", str(models)], capsys)
    assert "not HAN's published file (its git blob id is" in err and RELEASES["HAN"].git_blob in err
    code, err = refused(["VALOR++", "--from", str(source), "--models_dir", str(models)], capsys)
    assert code == 1 and "no model_VALOR++/checkpoint_best.pt (VALOR++)" in err
