"""YOLO training jobs: the dataset (a saved YOLO export or the accepted set) written as chips, ultralytics training
reporting each epoch to the Job row, and the best weights kept as the project's next model version."""

import shutil
import statistics
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max

from annotate.errors import DomainError
from annotate.models import DetectionStatus, Project
from annotate.permissions import Action, require
from datasets import export_services
from datasets.export_options import export_params
from datasets.export_types import ExportLoss
from datasets.models import ExportDefinition
from gpu_tasks import job_admission, runtime
from gpu_tasks import services as job_services
from gpu_tasks.inference.errors import Cancelled
from gpu_tasks.models import Job, JobKind
from gpu_tasks.run_context import RunContext

from .models import ModelVersion
from .serializers import BASE_ARCHITECTURES, TrainRequestSerializer

# Training's share of the progress bar (writing the chips takes the rest).
DATASET_SHARE = 0.1


def detectors_dir() -> Path:
    """Model versions' weights and training work folders: DATA_DIR/detectors/."""
    return Path(settings.DATA_DIR) / "detectors"


def checkpoints_dir() -> Path:
    """Where an administrator puts pretrained YOLO checkpoints (.pt) to start from: MODEL_DIR/yolo/."""
    return Path(settings.MODEL_DIR) / "yolo"


def base_models() -> list[str]:
    """What training may start from: the architectures (random weights) and the local checkpoints."""
    local = sorted(p.name for p in checkpoints_dir().glob("*.pt")) if checkpoints_dir().is_dir() else []
    return [*BASE_ARCHITECTURES, *local]


def _base_model_source(name: str) -> str:
    """The yaml name ultralytics builds, or the local checkpoint's path; refused (saying what exists) otherwise."""
    if name in BASE_ARCHITECTURES:
        return name
    path = checkpoints_dir() / Path(name).name
    if name.endswith(".pt") and path.is_file():
        return str(path)
    raise DomainError(f"No base model {name!r}: choose one of {', '.join(base_models())}, or put the checkpoint file "
                      f"in {checkpoints_dir()} (this server downloads no weights).", detail={"base_model": name})


def _dataset_params(project: Project, definition: ExportDefinition | None) -> dict:
    """Export params of the training set: a saved definition's selection and chip options in YOLO detect format,
    or every accepted object of the project's ready scenes with the default chips."""
    if definition is None:
        base = {"format": "yolo_detect", "statuses": [DetectionStatus.ACCEPTED], "name": "accepted set"}
    else:
        base = {**definition.params, "format": "yolo_detect"}  # a COCO or segment export trains on its boxes
    return export_params({**base, "save": False})


def train_submit(*, project: Project, user: AbstractBaseUser, role: str | None, data: dict,
                 enqueue: bool = True) -> Job:
    """Validate a training request and queue its job on the gpu queue (JobKind.TRAIN)."""
    require(role, Action.RUN_JOBS)
    form = TrainRequestSerializer(data=data)
    form.is_valid(raise_exception=True)
    req = dict(form.validated_data)
    _base_model_source(req["base_model"])
    definition = None
    if req["definition_id"]:
        definition = ExportDefinition.objects.filter(project=project, pk=req["definition_id"]).first()
        if definition is None:
            raise DomainError(f"Export definition {req['definition_id']} is not a saved export of this project.")
    dataset = _dataset_params(project, definition)
    selected = export_services.selection_check(project, dataset)
    req["imgsz"] = req["imgsz"] or dataset["chip_size"]
    with transaction.atomic():
        job_admission.user_pending_check(user=user)
        job = job_services.job_create(kind=JobKind.TRAIN, project_id=project.pk, user=user,
                                      params={**req, "dataset": dataset, "selected": selected})
        if enqueue:
            job_services._enqueue(job)  # the gpu_tasks machinery every job kind is sent through
    return job


def _training_gsd(dataset: dict, manifest: dict) -> float:
    """The ground resolution the chips were cut at: the export's gsd_m, else the scenes' median."""
    if dataset.get("gsd_m"):
        return float(dataset["gsd_m"])
    return float(statistics.median(s["gsd_m"] for s in manifest["scenes"] if s["objects"]))


def _check_splits(root: Path, manifest: dict) -> list[str]:
    """Refuse a dataset without training chips; validate on the training chips when it has no validation chips
    (ultralytics needs a val split), saying so."""
    chips = manifest["counts"]["chips"] or {}
    if not chips.get("train"):
        raise DomainError("The dataset has no training chips (every labelled chip went to validation): lower "
                          "val_fraction or block_chips in the export definition, or review more objects.",
                          detail={"chips": chips})
    if chips.get("val"):
        return []
    data = root / "data.yaml"
    data.write_text(data.read_text().replace("val: images/val", "val: images/train"))
    return ["no validation chips: the metrics are measured on the training chips (optimistic); lower block_chips or "
            "chip_size, or add scenes, to validate on held-out ground"]


def _version_create(*, job: Job, manifest: dict, gsd_m: float, best: Path, metrics: dict, history: list,
                    stopped_early: bool) -> ModelVersion:
    """Copy the best weights beside the project's other versions and record the version (numbered under a lock)."""
    project = job.project
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # two trainings ending at once: v3, v4
        number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
        target = detectors_dir() / str(project.pk) / f"v{number}-job{job.pk}.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(best, target)
        classes = {c["index"]: c for c in manifest["classes"]}
        ids = dict(project.classes.values_list("index", "pk"))
        return ModelVersion.objects.create(
            project=project, number=number, name=job.params.get("name", ""), job=job,
            # The definition may have been deleted while it trained: the version keeps its parameters anyway.
            export_definition=ExportDefinition.objects.filter(pk=job.params.get("definition_id") or 0).first(),
            dataset={"parameters": job.params["dataset"], "counts": manifest["counts"],
                     "scenes": [{k: s[k] for k in ("id", "name", "objects")} for s in manifest["scenes"]]},
            classes=[{"index": i, "class_id": ids.get(i), "name": c["name"]} for i, c in sorted(classes.items())],
            params={k: job.params[k] for k in ("base_model", "epochs", "imgsz", "batch", "patience")},
            metrics=metrics, history=history, gsd_m=gsd_m, imgsz=job.params["imgsz"],
            weights=str(target.relative_to(Path(settings.DATA_DIR))), stopped_early=stopped_early,
            created_by=job.created_by,
        )


def train_run(*, job: Job, run: RunContext) -> dict:
    """Write the dataset, train, keep the best weights as a model version; the result for the Job row."""
    from gpu_tasks.inference.yolo_training import ModelNotFound, train_yolo  # ultralytics: worker only

    work = detectors_dir() / "work" / f"job{job.pk}"
    shutil.rmtree(work, ignore_errors=True)  # a run after a killed worker starts clean
    (work / "dataset").mkdir(parents=True)
    history: list[dict] = []
    try:
        if run.should_cancel():
            raise Cancelled()
        dataset = job.params["dataset"]
        with run.stage("dataset"):
            try:
                manifest = export_services.dataset_write(job=job, project=job.project, params=dataset,
                                                         root=work / "dataset", run=run.part(0.0, DATASET_SHARE))
            except ExportLoss as exc:
                raise DomainError(f"The training set would lose or empty a label, so nothing was trained: {exc.key} "
                                  f"{exc.reason}.", detail={"object": exc.key, "reason": exc.reason}) from exc
        gsd_m = _training_gsd(dataset, manifest)
        warnings = _check_splits(work / "dataset", manifest)
        train_part = run.part(DATASET_SHARE, 1.0)

        def on_epoch(report) -> None:
            history.append({"epoch": report.epoch, "losses": report.losses, "metrics": report.metrics})
            # The chart reads the history from the row while the job runs.
            Job.objects.filter(pk=job.pk).update(result={"history": history, "epochs": report.epochs})
            m = report.metrics
            train_part.progress(report.epoch / report.epochs,
                                f"Epoch {report.epoch} of {report.epochs}: mAP50 {m.get('map50', 0):.3f}")

        train_part.progress(0.0, f"Training {job.params['base_model']} on {manifest['counts']['objects_written']} "
                                 "objects")
        with run.stage("train"):
            try:
                result = train_yolo(data_yaml=work / "dataset" / "data.yaml",
                                    model=_base_model_source(job.params["base_model"]), workdir=work / "runs",
                                    epochs=job.params["epochs"], imgsz=job.params["imgsz"], batch=job.params["batch"],
                                    patience=job.params["patience"], device=runtime.ultralytics_device(),
                                    on_epoch=on_epoch, should_cancel=run.should_cancel)
            except ModelNotFound as exc:
                raise DomainError(str(exc)) from exc
        if result.best is None:
            if result.cancelled:
                raise Cancelled(job_message="Cancelled before the first epoch ended: no weights to keep")
            raise DomainError("Training ended without weights (no epoch finished); check the dataset and retry.")
        metrics = result.best_metrics or (history[-1]["metrics"] if history else {})
        version = _version_create(job=job, manifest=manifest, gsd_m=gsd_m, best=result.best, metrics=metrics,
                                  history=history, stopped_early=result.cancelled)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the chips and ultralytics' run folder: the version has its weights
    out = {"model_version": version.pk, "label": str(version), "epochs_run": result.epochs_run, "metrics": metrics,
           "history": history, "gsd_m": gsd_m, "objects": manifest["counts"]["objects_written"], "warnings": warnings}
    if result.cancelled:
        raise Cancelled(job_message=f"Stopped after epoch {result.epochs_run} of {job.params['epochs']}; {version} "
                                    "keeps the best weights so far", result=out)
    return out


def train_job_run(*, job_id: int, claim: bool = True, progress_extra=None) -> Job:
    """Run a training job under its Job row (called by detectors.tasks.gpu_train_task)."""
    job = Job.objects.select_related("project", "created_by").get(pk=job_id)

    def work(run: RunContext):
        result = train_run(job=job, run=run)
        epochs = f"{result['epochs_run']} epoch" + ("s" if result["epochs_run"] != 1 else "")
        return result, f"Trained {result['label']} in {epochs}: mAP50 {result['metrics'].get('map50', 0):.3f}"

    return job_services.job_run(job=job, work=work, claim=claim, progress_extra=progress_extra)
