"""The stage timer and the JSON writer every experiment uses for its artifacts."""
import contextlib
import pathlib
import time

from absl import logging

from prefill_router import fileio
from prefill_router.evaluation import report as report_lib


@contextlib.contextmanager
def stage(name: str, timings: dict):
    """Logs the start and end of stage ``name``; records its wall time (s, 2 decimals) in ``timings[name]``."""
    logging.info("===== stage %s =====", name)
    start = time.time()
    yield
    timings[name] = round(time.time() - start, 2)
    logging.info("===== stage %s done in %.1f s =====", name, timings[name])


def write_json(path: pathlib.Path, obj) -> None:
    """``obj`` (numpy values converted, NaN -> null) as JSON with sorted keys, written atomically."""
    fileio.atomic_write_json(path, report_lib.to_jsonable(obj), indent=1, sort_keys=True)
