"""A tqdm progress bar that a job's progress callback can drive, for management commands."""

from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def progress_bar(desc: str, disable: bool = False):
    """Yield a `(fraction, message)` callback that moves a 0-100 % bar."""
    with tqdm(total=100, unit="%", desc=desc, disable=disable) as bar:

        def show(fraction: float, message: str) -> None:
            bar.n = round(min(max(fraction, 0.0), 1.0) * 100)
            bar.set_postfix_str(message[:60])
            bar.refresh()

        yield show
