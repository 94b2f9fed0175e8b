"""What each --mode of main_DHHN.py does: wiring data, nets, engine and checkpoints together.

train and retrain share `_fit` (they differ only in targets and learning rates, SPEC §7/§10);
val and test share `run_evaluate` (they differ only in the split). Errors a user can cause are
raised as one of USER_ERRORS before any long work starts; main_DHHN prints them without a traceback.
"""
import functools
import json
import math
import os
import time

import torch

import engine
from dataloader import LLPDataError, annotation_version, load_split, read_video_labels
from nets import build_mgns, build_parsing_model, default_feature_dims
from nets.convert import load_any_state_dict
from nets.dual import DualHHN
from utils import checkpoint
from utils.constants import METRIC_KEYS
from utils.eval_metrics import format_table
from utils.export import export_predictions
from utils.io import atomic_write_json, atomic_write_text
from utils.tables import confusion_dict, format_confusion, modality_confusion, per_class_table, write_per_class_csv
from utils.label_refinement import (RefinementError, estimate_flags, read_refined_labels, restrict_to_labels,
                                    summary_table, write_flags)
from utils.cuda_graph import CudaGraphError, GraphedTrainStep, check_device as check_cuda_graph_device
from utils.runtime import DeviceError, provenance, resolve_device
from utils.tensor_split import TensorSplit


class UsageError(ValueError):
    """A flag that cannot work (missing file, contradictory options); the message names the flag."""


USER_ERRORS = (UsageError, LLPDataError, checkpoint.CheckpointError, RefinementError, DeviceError, CudaGraphError)

# SPEC §7: which val score each selected checkpoint maximises
SELECTION_SCORES = {
    "audio": lambda metrics: (metrics["seg_audio"] + metrics["evt_audio"]) / 2,
    "visual": lambda metrics: (metrics["seg_visual"] + metrics["evt_visual"]) / 2,
    "overall": lambda metrics: metrics["seg_type"],
}
MODEL_GATING = {"dhhn": "modality", "han": "global"}   # SPEC §9 vs §11
AUTOCAST_DTYPES = {"none": None, "bf16": torch.bfloat16}   # --autocast
FUSED_ADAM_DEVICES = ("cuda", "cpu")


# ---------------------------------------------------------------- data

def _progress(args):
    return {"auto": None, "on": True, "off": False}[args.progress]


def _check_inputs(args, split_names):
    """Every file and folder the run needs exists; all problems reported at once, by flag."""
    needed = [("audio_dir", True), ("video_dir", True), ("st_dir", True)]
    needed += [(f"label_{name}", False) for name in split_names]
    if any(name != "train" for name in split_names):
        needed += [("eval_audio_csv", False), ("eval_visual_csv", False)]
    problems = []
    for flag, is_dir in needed:
        path = getattr(args, flag)
        if not (os.path.isdir(path) if is_dir else os.path.isfile(path)):
            problems.append(f"--{flag} {path}: {'folder' if is_dir else 'file'} not found")
    if problems:
        raise UsageError("missing inputs (see README 'Data'):\n  " + "\n  ".join(problems))


def _load(args, name):
    """The LLPSplit `name` (train/val/test) with segment truth for val and test."""
    with_truth = name != "train"
    if with_truth:
        # the audio eval file was corrected upstream in 2024: say which copy produced the numbers
        for flag in ("eval_audio_csv", "eval_visual_csv"):
            print(f"annotations: {annotation_version(getattr(args, flag))}")
    split = load_split(
        name, getattr(args, f"label_{name}"), args.audio_dir, args.video_dir, args.st_dir,
        eval_audio_csv=args.eval_audio_csv if with_truth else None,
        eval_visual_csv=args.eval_visual_csv if with_truth else None,
        cache_dir=None if args.feature_cache in (None, "none") else args.feature_cache,
        use_cache=args.feature_cache != "none", frame_dtype=args.frame_dtype, progress=_progress(args),
        pool_frames=args.frame_pooling == "load")
    published = default_feature_dims()
    if split.feature_dims() != published:
        # allowed on purpose (other feature sets), but never silently: a wrong feature folder shows here
        print(f"{name} features: sizes {split.feature_dims()} differ from the published {published}; "
              "the model is sized from the files")
    return split


def _to_device(args, split, device):
    return TensorSplit(split, device, pool_frames=args.frame_pooling == "load")


# ---------------------------------------------------------------- model assembly

def _model_config(args, feature_dims):
    return {"model_name": args.model, "feature_dims": dict(feature_dims),
            "hier_feat": args.hier_feat, "hier_pred": args.hier_pred}


def _build_from_config(config):
    return build_parsing_model(config["model_name"], config["feature_dims"],
                               hier_feat=config["hier_feat"], hier_pred=config["hier_pred"])


def _build_training(args, feature_dims, device):
    """Nets, optimizers and schedulers of a train/retrain run, by name."""
    nets = {"model": _build_from_config(_model_config(args, feature_dims))}
    if args.model == "dhhn":
        audio_mgn, visual_mgn = build_mgns(feature_dims)
        if args.audio_mgn:
            nets["audio_mgn"] = audio_mgn
        if args.visual_mgn:
            nets["visual_mgn"] = visual_mgn
    learning_rates = {"model": args.lr, "audio_mgn": args.lr_audio_mgn, "visual_mgn": args.lr_visual_mgn}
    optimizers, schedulers = {}, {}
    for name, net in nets.items():
        net.to(device)
        # fused Adam is the same update in one pass over the weights (CPU: 3x faster than the
        # per-parameter loop, measured in scripts/benchmark.py); CUDA and CPU have it
        optimizers[name] = torch.optim.Adam(net.parameters(), lr=learning_rates[name],
                                            fused=device.type in FUSED_ADAM_DEVICES)
        schedulers[name] = torch.optim.lr_scheduler.StepLR(optimizers[name], args.lr_step, args.lr_gamma)
    return nets, optimizers, schedulers


def load_selected_model(args, role, feature_dims, device):
    """(model, model_config) of a selected checkpoint, in the project's or the release's format."""
    path = checkpoint.find_selected(args.model_save_dir, args.checkpoint, role)
    content = checkpoint.load(path)
    if "model" in content and "model_config" in content:
        config = content["model_config"]
        state_dict = content["model"]
    else:  # a raw state_dict saved by the original release
        config = _model_config(args, feature_dims)
        try:
            state_dict = load_any_state_dict(content, "hcmn" if args.model == "dhhn" else "han")
        except (KeyError, ValueError) as error:
            raise checkpoint.CheckpointError(f"{path}: {error}") from None
    if dict(config["feature_dims"]) != dict(feature_dims):
        raise checkpoint.CheckpointError(
            f"{path} was trained on feature sizes {config['feature_dims']}, the data has {dict(feature_dims)}")
    model = _build_from_config(config)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:   # missing / unexpected keys or shapes
        raise checkpoint.CheckpointError(f"{path} does not fit a {config['model_name']} model: {error}") from None
    return model.to(device).eval(), config


# ---------------------------------------------------------------- records

def _record_path(args, kind):
    return os.path.join(args.model_save_dir, f"{args.checkpoint}_{args.mode}_{kind}")


def headline(metrics):
    """The 10 published numbers (fractions) of a metrics dict."""
    return {key: float(metrics[key]) for key in METRIC_KEYS}


def _start_run(args, device):
    os.makedirs(args.model_save_dir, exist_ok=True)
    info = provenance(device, args.seed)
    print(f"DHHN {args.mode} | model {args.model} | commit {info['git_commit']} | device {info['device']}")
    print("args: " + " ".join(f"{key}={value}" for key, value in sorted(vars(args).items())))
    if not args.no_log:
        atomic_write_json({"args": vars(args), "provenance": info}, _record_path(args, "args.json"))
    return info


# ---------------------------------------------------------------- train / retrain

def run_train(args):
    return _fit(args, refine_flags=None)


def run_retrain(args):
    if not args.refined_labels:
        raise UsageError("--mode retrain needs --refined_labels (a .csv or .pkl from --mode estimate_labels, "
                         "or a pickle in the published format)")
    if not os.path.isfile(args.refined_labels):
        raise UsageError(f"--refined_labels {args.refined_labels}: file not found")
    return _fit(args, refine_flags=lambda filenames: read_refined_labels(args.refined_labels, filenames))


def _selection_roles(args):
    # DHHN keeps three checkpoints, each when its score improves; HAN one, ties going to the later epoch
    return (("audio", "visual", "overall"), False) if args.model == "dhhn" else (("overall",), True)


def _fit(args, refine_flags):
    device = resolve_device(args.device)
    if args.cuda_graph:
        check_cuda_graph_device(device)
    _check_inputs(args, ("train", "val"))
    if args.resume and not os.path.isfile(checkpoint.last_path(args.model_save_dir, args.checkpoint)):
        raise UsageError(f"--resume: no {checkpoint.last_path(args.model_save_dir, args.checkpoint)} to resume from")
    # a bad flags file is reported before the features are read, not after
    raw_flags = refine_flags(read_video_labels(args.label_train)[0]) if refine_flags else None
    train_split = _load(args, "train")
    flags = None
    if raw_flags is not None:
        audio_flags, visual_flags, dropped = restrict_to_labels(*raw_flags, train_split.labels)
        if dropped:
            print(f"--refined_labels {args.refined_labels}: {dropped} flag(s) on classes the video is not "
                  "labelled with are ignored")
        flags = (audio_flags, visual_flags)
    val_split = _load(args, "val")
    feature_dims = train_split.feature_dims()
    if val_split.feature_dims() != feature_dims:
        raise LLPDataError(f"feature sizes differ between train {feature_dims} and val {val_split.feature_dims()}")
    info = _start_run(args, device)
    started = time.time()

    train_data = _to_device(args, train_split, device)
    if flags is not None:
        train_data.add("audio_flags", torch.as_tensor(flags[0], dtype=torch.bool))
        train_data.add("visual_flags", torch.as_tensor(flags[1], dtype=torch.bool))
    val_data = _to_device(args, val_split, device)
    nets, optimizers, schedulers = _build_training(args, feature_dims, device)
    model_config = _model_config(args, feature_dims)
    generator = torch.Generator().manual_seed(args.seed)
    roles, ties_to_later = _selection_roles(args)
    best = {role: -math.inf for role in roles}
    best_epoch = {role: None for role in roles}
    history, start_epoch = [], 1
    last_file = checkpoint.last_path(args.model_save_dir, args.checkpoint)
    if args.resume:
        state = checkpoint.load(last_file)
        if state["args"]["mode"] != args.mode or state["args"]["model"] != args.model:
            raise UsageError(f"--resume: {last_file} is a {state['args']['model']} {state['args']['mode']} run")
        for name, net in nets.items():
            net.load_state_dict(state["nets"][name])
            optimizers[name].load_state_dict(state["optimizers"][name])
            schedulers[name].load_state_dict(state["schedulers"][name])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        best, best_epoch, history = dict(state["best"]), dict(state["best_epoch"]), list(state["history"])
        start_epoch = state["epoch"] + 1
        print(f"resumed from {last_file} after epoch {state['epoch']}")

    autocast_dtype = AUTOCAST_DTYPES[args.autocast]
    graphed_step = None
    if args.cuda_graph:   # built after a resume, so that it sees the restored optimizer state
        step = functools.partial(engine.training_step, nets["model"], optimizers=list(optimizers.values()),
                                 audio_mgn=nets.get("audio_mgn"), visual_mgn=nets.get("visual_mgn"),
                                 use_rmse=args.rmse, autocast_dtype=autocast_dtype)
        graphed_step = GraphedTrainStep(step, train_data, args.batch_size, nets.values(), optimizers.values())
    gating = MODEL_GATING[args.model]
    # checkpoints are written on a worker thread; leaving the block waits for every write
    with checkpoint.BackgroundWriter() as writer:
        for epoch in range(start_epoch, args.epochs + 1):
            epoch_start = time.time()
            losses = engine.train_one_epoch(
                nets["model"], train_data, list(optimizers.values()), args.batch_size, generator,
                audio_mgn=nets.get("audio_mgn"), visual_mgn=nets.get("visual_mgn"), use_rmse=args.rmse,
                progress=_progress(args), desc=f"epoch {epoch}", autocast_dtype=autocast_dtype,
                graphed_step=graphed_step, on_step=_step_logger(args, epoch))
            for scheduler in schedulers.values():
                scheduler.step()
            metrics = engine.evaluate(nets["model"], val_data, val_split.gt_audio, val_split.gt_visual,
                                      gating, args.eval_batch_size, _progress(args))
            saved = []
            for role in roles:
                score = SELECTION_SCORES[role](metrics)
                if score > best[role] or (ties_to_later and score == best[role]):
                    best[role], best_epoch[role] = score, epoch
                    writer.save(checkpoint.best_path(args.model_save_dir, args.checkpoint, role),
                                model=nets["model"].state_dict(), model_config=model_config, role=role,
                                epoch=epoch, score=score, val=headline(metrics), args=vars(args))
                    saved.append(role)
            record = {"epoch": epoch, "losses": losses, "val": headline(metrics), "saved": saved,
                      "seconds": round(time.time() - epoch_start, 3)}
            history.append(record)
            writer.save(
                last_file, epoch=epoch, args=vars(args), model_config=model_config,
                nets={name: net.state_dict() for name, net in nets.items()},
                optimizers={name: opt.state_dict() for name, opt in optimizers.items()},
                schedulers={name: sch.state_dict() for name, sch in schedulers.items()},
                generator=generator.get_state(), rng_cpu=torch.get_rng_state(),
                rng_cuda=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                best=best, best_epoch=best_epoch, history=history)
            if not args.no_log:
                atomic_write_text("".join(_json_line(item) for item in history), _record_path(args, "log.jsonl"))
            print(_epoch_line(record))

    summary = {"provenance": info, "args": vars(args), "best_epoch": best_epoch, "best_score": best,
               "history": history, "wall_seconds": round(time.time() - started, 3)}
    for role in roles:
        if best_epoch[role] is not None:
            val_row = history[best_epoch[role] - 1]["val"]
            print(format_table(val_row, title=f"val, best-{role} checkpoint (epoch {best_epoch[role]})"))
    if not args.no_log:
        atomic_write_json(summary, _record_path(args, "summary.json"))
    return summary


def _step_logger(args, epoch):
    """Every --log-interval steps, the batch's total loss, as the release printed it."""
    if args.log_interval <= 0:
        return None

    def log(step, num_steps, losses):
        if step % args.log_interval == 0:
            total = float(sum(value.detach() for value in losses.values()))
            print(f"epoch {epoch} step {step}/{num_steps} | loss {total:.4f}")
    return log


def _json_line(obj):
    return json.dumps(obj) + "\n"


def _epoch_line(record):
    val = record["val"]
    losses = " ".join(f"{name}={value:.4f}" for name, value in record["losses"].items())
    scores = " ".join(f"{key}={100 * val[key]:.1f}" for key in ("seg_audio", "seg_visual", "seg_av", "seg_type", "evt_type"))
    saved = f" saved: {','.join(record['saved'])}" if record["saved"] else ""
    return f"epoch {record['epoch']:3d} ({record['seconds']:.1f}s) | {losses} | val {scores}{saved}"


# ---------------------------------------------------------------- val / test

def _selected_roles_needed(args):
    """Selected checkpoints a val/test run cannot do without (SPEC §8; HAN: its one checkpoint)."""
    return ("audio", "visual") if args.model == "dhhn" else ("overall",)


def assemble_models(args, feature_dims, device):
    """Rows to report: name -> (model, gating). DHHN: the dual stream first (SPEC §8), then the
    single best-overall HCMN so the effect of dual selection is visible; HAN: its selected model."""
    rows = {}
    if args.model == "dhhn":
        audio_stream, _ = load_selected_model(args, "audio", feature_dims, device)
        visual_stream, _ = load_selected_model(args, "visual", feature_dims, device)
        rows["DHHN dual (best-audio + best-visual)"] = (DualHHN(audio_stream, visual_stream), "modality")
        try:
            overall, _ = load_selected_model(args, "overall", feature_dims, device)
            rows["HCMN best-overall"] = (overall, "modality")
        except checkpoint.CheckpointError:
            pass
    else:
        model, config = load_selected_model(args, "overall", feature_dims, device)
        rows["HAN best (val Type@AV seg.)"] = (model, MODEL_GATING[config["model_name"]])
    return rows


def run_evaluate(args):
    device = resolve_device(args.device)
    split_name = args.mode
    _check_inputs(args, (split_name,))
    for role in _selected_roles_needed(args):   # missing checkpoints are reported before loading features
        checkpoint.find_selected(args.model_save_dir, args.checkpoint, role)
    split = _load(args, split_name)
    rows = assemble_models(args, split.feature_dims(), device)
    info = _start_run(args, device)
    started = time.time()
    data = _to_device(args, split, device)
    tables, results = {}, {}
    for name, (model, gating) in rows.items():
        outputs = engine.predict(model, data, args.eval_batch_size, progress=_progress(args), desc=name)
        metrics = engine.score_outputs(outputs, split.gt_audio, split.gt_visual, gating)
        results[name] = (outputs, metrics)
        tables[name] = headline(metrics)
        print(format_table(metrics, title=f"{split_name}: {name}"))
    summary = {"provenance": info, "args": vars(args), "split": split_name, "num_videos": split.num_videos,
               "tables": tables, "wall_seconds": round(time.time() - started, 3)}
    main_name = next(iter(results))   # the first row is the method's own (dual DHHN, or HAN)
    main_outputs, main_metrics = results[main_name]
    print(per_class_table(main_metrics, title=f"{split_name}: per-class F1 of {main_name}"))
    confusion = modality_confusion(*engine.segment_predictions(main_outputs, rows[main_name][1]),
                                   split.gt_audio, split.gt_visual)
    print(format_confusion(confusion, title=f"{split_name}: modality confusion of {main_name} (video x class x segment)"))
    summary["modality_confusion"] = confusion_dict(confusion)
    if not args.no_log:
        write_per_class_csv(main_metrics, _record_path(args, "per_class.csv"))
        atomic_write_json(summary, _record_path(args, "summary.json"))
    if args.export_dir:
        export_predictions(args.export_dir, split,
                           {name: (results[name][0], gating) for name, (_, gating) in rows.items()})
        print(f"predictions exported to {args.export_dir}")
    return summary


# ---------------------------------------------------------------- label refinement

def run_estimate_labels(args):
    """Judge every training label by modality swapping with a selected checkpoint; SPEC §10."""
    device = resolve_device(args.device)
    _check_inputs(args, ("train",))
    checkpoint.find_selected(args.model_save_dir, args.checkpoint, args.refine_source)   # before loading features
    train_split = _load(args, "train")
    model, config = load_selected_model(args, args.refine_source, train_split.feature_dims(), device)
    info = _start_run(args, device)
    started = time.time()
    audio_flags, visual_flags, partners = estimate_flags(
        model, _to_device(args, train_split, device), train_split.labels, args.seed,
        args.eval_batch_size, _progress(args))
    prefix = args.refine_out or os.path.join(args.model_save_dir, f"{args.checkpoint}_refined_labels")
    pickle_path, csv_path = write_flags(prefix, train_split.filenames, audio_flags, visual_flags)
    print(summary_table(audio_flags, visual_flags, train_split.labels))
    print(f"flags written to {pickle_path} (published format) and {csv_path}")
    summary = {"provenance": info, "args": vars(args), "source_checkpoint": args.refine_source,
               "model_config": config, "flagged_audio": int(audio_flags.sum()),
               "flagged_visual": int(visual_flags.sum()), "outputs": [pickle_path, csv_path],
               "wall_seconds": round(time.time() - started, 3)}
    if not args.no_log:
        atomic_write_json(summary, _record_path(args, "summary.json"))
    return summary
