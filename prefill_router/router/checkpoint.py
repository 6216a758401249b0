"""Router checkpoints: a self-contained, checksummed RouterBundle on disk (built on ``prefill_router.checkpointing``).

Layout of ``save_router(directory, bundle)``, written into ``<dir>.tmp-<pid>`` and moved into place with
``os.replace`` (atomic):
    <dir>/router.json      format version, package version, targets, prices, costs, block specs, encoder specs,
                           trunk + train config, training split (seed + prompt hashes), ensemble seeds/val losses
    <dir>/arrays/          orbax pure-dict tree {"transforms": {"0": {mean, scale, ...}, ...}, "ensemble": params}
    <dir>/checksums.json   {file path: sha256} of router.json and every file under arrays/, written last
``load_router`` verifies every checksum before reading anything, so a truncated or corrupted file fails with
a message naming it instead of routing with damaged weights.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging

from prefill_router import checkpointing, fileio
from prefill_router.router import blocks as blocks_lib
from prefill_router.router import model as model_lib
from prefill_router.router.ensemble import Ensemble, RouterBundle, TrainReport, abstract_params

FORMAT_VERSION = 2
ROUTER_JSON = "router.json"
ARRAYS = "arrays"
CHECKSUMS = "checksums.json"
_FIX = "re-save the router (rerun the training run that wrote it)"
_TRANSFORM_FIELDS = tuple(f.name for f in dataclasses.fields(blocks_lib.FittedTransform))


def _to_json_and_arrays(bundle: RouterBundle) -> tuple[dict[str, Any], dict[str, Any]]:
    ens = bundle.ensemble
    meta = {
        "format_version": FORMAT_VERSION,
        "package_version": bundle.package_version,
        "targets": list(bundle.targets),
        "blocks": [b.to_json() for b in bundle.blocks],
        "prices": {k: list(v) for k, v in bundle.prices.items()},
        "cost_table": bundle.cost_table,
        "encoders": bundle.encoders,
        "train_config": bundle.train_config,
        "train_split": bundle.train_split,
        "extra": bundle.extra,
        "trunk_config": ens.config.to_json(),
        "ensemble": {"seeds": list(ens.seeds), "val_losses": np.asarray(ens.val_losses).tolist(),
                     "target_names": list(ens.target_names) if ens.target_names is not None else None,
                     "report": ens.report.to_json() if ens.report is not None else None},
    }
    arrays = {"transforms": {str(i): t.arrays() for i, t in enumerate(bundle.transforms)},
              "ensemble": jax.tree.map(np.asarray, ens.params)}
    return meta, arrays


def _from_json_and_arrays(meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> RouterBundle:
    config = model_lib.TrunkConfig.from_json(meta["trunk_config"])
    blocks = [blocks_lib.spec_from_json(b) for b in meta["blocks"]]
    e = meta["ensemble"]
    params = checkpointing.from_pure_dict(abstract_params(config), arrays["ensemble"], "router checkpoint")
    ensemble = Ensemble(config, params, tuple(e["seeds"]), np.asarray(e["val_losses"]),
                        tuple(e["target_names"]) if e["target_names"] is not None else None,
                        TrainReport.from_json(e["report"]) if e["report"] is not None else None)
    return RouterBundle(
        targets=tuple(meta["targets"]), blocks=blocks,
        transforms=[blocks_lib.FittedTransform(**arrays["transforms"][str(i)]) for i in range(len(blocks))],
        ensemble=ensemble, prices={k: tuple(v) for k, v in meta["prices"].items()}, cost_table=meta["cost_table"],
        encoders=meta["encoders"], train_config=meta["train_config"], train_split=meta["train_split"],
        extra=meta["extra"], package_version=meta["package_version"])


def save_router(directory: str | os.PathLike, bundle: RouterBundle, *, overwrite: bool = False) -> pathlib.Path:
    """Write a self-contained router checkpoint (see module docstring); returns its absolute path."""
    final = pathlib.Path(directory).expanduser().resolve()
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists; pass overwrite=True or choose another directory")
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    meta, arrays = _to_json_and_arrays(bundle)
    checkpointing.save_tree(tmp / ARRAYS, arrays)
    fileio.atomic_write_json(tmp / ROUTER_JSON, meta, indent=1, sort_keys=True)
    fileio.atomic_write_json(tmp / CHECKSUMS, checkpointing.file_digests(tmp), indent=1)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    logging.info("saved router checkpoint to %s", final)
    return final


def verify_router(directory: str | os.PathLike) -> pathlib.Path:
    """The checkpoint's absolute path after checking every file against checksums.json.

    FileNotFoundError if it is no router checkpoint; ValueError naming the first damaged file otherwise.
    """
    path = pathlib.Path(directory).expanduser().resolve()
    if not (path / ROUTER_JSON).is_file():
        raise FileNotFoundError(f"{path / ROUTER_JSON} not found: {path} is not a router checkpoint")
    try:
        expected = json.loads((path / CHECKSUMS).read_text())
        if not isinstance(expected, dict) or ROUTER_JSON not in expected:
            raise ValueError("no checksum of router.json")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"router checkpoint file {path / CHECKSUMS} is missing or unreadable "
                         f"({type(e).__name__}); {_FIX}") from None
    bad = checkpointing.changed_files(path, expected)
    if bad:
        raise ValueError(f"router checkpoint file {path / bad[0]} is corrupt or truncated (sha256 differs from "
                         f"{CHECKSUMS}{f'; {len(bad) - 1} more damaged' if len(bad) > 1 else ''}); {_FIX}")
    return path


def load_router(directory: str | os.PathLike) -> RouterBundle:
    """Read a router checkpoint written by ``save_router`` after verifying its checksums; needs no training data."""
    path = verify_router(directory)
    meta = json.loads((path / ROUTER_JSON).read_text())
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"router checkpoint {path} has format version {version}; this code reads version "
                         f"{FORMAT_VERSION}; {_FIX} with this prefill_router release")
    like = {"transforms": {str(i): dict.fromkeys(_TRANSFORM_FIELDS, 0) for i in range(len(meta["blocks"]))},
            "ensemble": abstract_params(model_lib.TrunkConfig.from_json(meta["trunk_config"]))}
    return _from_json_and_arrays(meta, checkpointing.restore_tree(path / ARRAYS, like))
