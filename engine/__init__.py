"""The training and evaluation loops (loops.py), the training step as one CUDA graph
(cuda_graph.py), optimizers and schedules (optimization.py) and label refinement by modality
swapping (label_refinement.py). Modes call the loops through this package: `engine.evaluate(...)`."""
from engine.loops import EVAL_BATCH_SIZE, TrainStep, estimate_label_flags, evaluate, predict, train_one_epoch

__all__ = ["EVAL_BATCH_SIZE", "TrainStep", "estimate_label_flags", "evaluate", "predict", "train_one_epoch"]
