"""YOLO training on an exported dataset (a data.yaml), offline, with a report per epoch and a cancel that stops at
the end of the epoch keeping the best weights so far.

ultralytics runs the training; this module only starts it without network access (a local font in place of the
one it would download, a model from a local yaml or checkpoint) and turns its per-epoch callback into ours.
"""

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The metrics ultralytics reports after each validation, under the names the app shows.
METRIC_NAMES = {
    "metrics/mAP50(B)": "map50", "metrics/mAP50-95(B)": "map50_95",
    "metrics/precision(B)": "precision", "metrics/recall(B)": "recall",
}


@dataclass(frozen=True)
class EpochReport:
    """One finished epoch: its losses (train) and validation metrics."""

    epoch: int  # 1-based
    epochs: int
    losses: dict
    metrics: dict


@dataclass
class TrainResult:
    """Where the weights are and how the training went."""

    best: Path | None
    last: Path | None
    epochs_run: int
    cancelled: bool
    history: list = field(default_factory=list)  # EpochReport per epoch
    save_dir: Path | None = None
    best_metrics: dict = field(default_factory=dict)  # the final validation of the best weights


class ModelNotFound(FileNotFoundError):
    """A model that is neither an architecture yaml ultralytics knows nor a local checkpoint file."""


def ensure_local_font() -> None:
    """ultralytics fetches Arial.ttf for its plots and dataset checks unless one is in its settings folder: any
    local TTF under that name will do (matplotlib ships DejaVu Sans), so no network is ever tried."""
    import matplotlib
    from ultralytics.utils import USER_CONFIG_DIR

    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = Path(USER_CONFIG_DIR) / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", target)


def load_model(model: str | Path):
    """A YOLO model from an architecture yaml (random weights, e.g. yolov8n.yaml) or a local .pt checkpoint."""
    from ultralytics import YOLO

    text = str(model)
    if text.endswith((".yaml", ".yml")):
        return YOLO(text)
    path = Path(text)
    if not path.is_file():
        raise ModelNotFound(f"No checkpoint at {path}: put the .pt file there (this server does not download "
                            "weights), or start from an architecture such as yolov8n.yaml.")
    try:
        return YOLO(str(path))
    except Exception as exc:  # a truncated or foreign file: torch, pickle or ultralytics errors of every kind
        raise ModelNotFound(f"{path} is not a YOLO checkpoint ultralytics can load ({exc.__class__.__name__}: "
                            f"{exc}); replace the file, or start from an architecture such as yolov8n.yaml.") from exc


def train_yolo(*, data_yaml: Path, model: str | Path, workdir: Path, epochs: int = 50, imgsz: int = 640,
               batch: int = 16, patience: int = 20, device: str | None = None, seed: int = 0,
               on_epoch: Callable[[EpochReport], None] | None = None,
               should_cancel: Callable[[], bool] | None = None) -> TrainResult:
    """Train, reporting each epoch; a cancel takes effect when the epoch ends (its weights are saved first)."""
    ensure_local_font()
    yolo = load_model(model)
    history: list[EpochReport] = []
    cancelled = {"value": False}

    final: dict = {}
    in_epoch = {"value": False}

    def epoch_start(trainer) -> None:
        in_epoch["value"] = True

    def epoch_end(trainer) -> None:
        metrics = {METRIC_NAMES[k]: round(float(v), 5) for k, v in (trainer.metrics or {}).items() if k in METRIC_NAMES}
        if not in_epoch["value"]:
            # No epoch ran since the last report: ultralytics' final validation of best.pt after the loop.
            final.update(metrics)
            return
        in_epoch["value"] = False
        losses = {k.split("/")[-1]: round(float(v), 5) for k, v in trainer.label_loss_items(trainer.tloss).items()}
        report = EpochReport(epoch=trainer.epoch + 1, epochs=trainer.epochs, losses=losses, metrics=metrics)
        history.append(report)
        if on_epoch is not None:
            on_epoch(report)
        if should_cancel is not None and should_cancel():
            cancelled["value"] = True
            trainer.stop = True  # ultralytics saved this epoch's last.pt / best.pt before this callback

    yolo.add_callback("on_train_epoch_start", epoch_start)
    yolo.add_callback("on_fit_epoch_end", epoch_end)
    yolo.train(data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, patience=patience, workers=0,
               device=device or "cpu", amp=device not in (None, "cpu"), plots=False, project=str(workdir),
               name="train", exist_ok=True, verbose=False, seed=seed, deterministic=True)
    trainer = yolo.trainer
    best = Path(trainer.best) if Path(trainer.best).is_file() else None
    last = Path(trainer.last) if Path(trainer.last).is_file() else None
    return TrainResult(best=best, last=last, epochs_run=len(history), cancelled=cancelled["value"], history=history,
                       save_dir=Path(trainer.save_dir), best_metrics=final)
