"""Domain errors raised by the inference package; the Django side maps them to job errors."""

FETCH_HINT = (
    "run `manage.py fetch_models` on a machine with internet access (and copy the model directory here), "
    "or set DINO_MODEL / SAM2_MODEL to a local path"
)


class ModelUnavailable(Exception):
    """A configured model's weights are not on this machine (we never download at run time)."""

    def __init__(self, model: str, detail: str = "") -> None:
        self.model = model
        msg = f"model {model!r} is not available locally"
        if detail:
            msg += f" ({detail})"
        super().__init__(f"{msg}: {FETCH_HINT}")


class IncompatibleEmbeddings(Exception):
    """Two embedding sets (grids, prototypes) were made with different models or preprocessing."""


class InsufficientDiskSpace(Exception):
    """Too little free disk space for an output (the message names the needed and free space)."""


class Cancelled(Exception):
    """The caller asked to stop a long-running unit of work (checked between batches).

    `result` and `job_message`: what a unit that keeps its partial work (training's best weights) leaves on the job
    (the job says how far it got otherwise).
    """

    def __init__(self, message: str = "", result: dict | None = None, job_message: str = "") -> None:
        super().__init__(message)
        self.result = result
        self.job_message = job_message
