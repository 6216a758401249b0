"""The stage timer every experiment wraps its stages in; typed configs built from config subtrees."""
import contextlib
import dataclasses
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


def typed(cls, subtree, *, skip=(), **extra):
    """``cls(**entries, **extra)``: the dataclass built straight from a config subtree whose entries carry the field
    names of ``cls``; ``extra`` adds or overrides fields (values derived from other settings). An entry that is
    neither a field of ``cls`` nor listed in ``skip`` (settings read elsewhere) raises ValueError naming it."""
    fields = {f.name for f in dataclasses.fields(cls)}
    entries = dict(subtree.items())
    unknown = sorted(set(entries) - fields - set(skip))
    if unknown:
        raise ValueError(f"config entries {unknown} are not fields of {cls.__name__} ({', '.join(sorted(fields))}); "
                         "rename them or list them in skip")
    return cls(**{**{k: v for k, v in entries.items() if k in fields}, **extra})
