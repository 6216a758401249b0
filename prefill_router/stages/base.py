"""The stage timer every experiment wraps its stages in."""
import contextlib
import time

from absl import logging


@contextlib.contextmanager
def stage(name: str, timings: dict):
    """Logs the start and end of stage ``name``; records its wall time (s, 2 decimals) in ``timings[name]``."""
    logging.info("===== stage %s =====", name)
    start = time.time()
    yield
    timings[name] = round(time.time() - start, 2)
    logging.info("===== stage %s done in %.1f s =====", name, timings[name])
