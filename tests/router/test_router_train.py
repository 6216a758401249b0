"""Seed-ensemble training: concurrent == host-sequential == in-program == vmapped, no recompiles, determinism, keep-best,
resume, learning, a generic SeedModel, input errors.

All trainings share one problem shape so the compiled per-seed program is reused across tests.
"""
import dataclasses
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prefill_router.router import model as model_lib
from prefill_router.router import train

N, D, K = 64, 7, 3
CFG = train.TrainConfig(hidden=(8, 6), dropout=(0.3, 0.2), learning_rate=1e-2, batch_size=16, max_epochs=14,
                        patience=4, seeds=(0, 1, 2, 3), keep=2, checkpoint_every=4)
pytestmark = pytest.mark.usefixtures("fast_compile")  # tests/router/conftest.py


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D)).astype(np.float32)
    w = rng.normal(size=(D, K))
    y = (x @ w > 0).astype(np.float32)
    m = rng.random((N, K)) > 0.15
    y[~m] = np.nan
    return x, y, m


def _leaves(ens):
    return [np.asarray(a) for a in jax.tree.leaves(ens.params)]


@pytest.fixture(scope="module")
def trained():
    return train.train_ensemble(*_data(), CFG)


def test_learns_and_reports(trained):
    rep = trained.report
    assert rep.n_val == 10 and rep.n_train == 54  # ceil(0.15 * 64) validation rows
    assert np.all(np.isfinite(rep.best_val)) and np.all(rep.best_epoch >= 1)
    # training loss goes down over the first epochs for every seed
    assert np.all(rep.train_history[:, 3] < rep.train_history[:, 0])
    x, y, m = _data()
    p = trained.predict(x)
    assert p.shape == (N, K) and np.all((p > 0) & (p < 1))
    acc = ((p > 0.5) == (y > 0.5))[m].mean()
    assert acc > 0.75


def test_every_layout_gives_the_same_numbers(trained):
    """Concurrent per-item calls (the CPU default), one after another, and all items in one program: the same
    program per item, so bit-equal; vmapped groups equal up to float reordering."""
    x, y, m = _data()
    for other in (train.train_seeds_sequential(x, y, m, CFG), train.train_ensemble(x, y, m, CFG, workers=2),
                  train.train_ensemble(x, y, m, CFG, workers=0)):
        np.testing.assert_array_equal(other.report.best_val, trained.report.best_val)
        np.testing.assert_array_equal(other.report.epochs_run, trained.report.epochs_run)
        assert other.seeds == trained.seeds
        for a, b in zip(_leaves(other), _leaves(trained)):
            np.testing.assert_array_equal(a, b)
    grouped = train.train_ensemble(x, y, m, CFG, seed_batch=3)
    np.testing.assert_allclose(grouped.report.best_val, trained.report.best_val, atol=1e-6)
    np.testing.assert_array_equal(grouped.report.epochs_run, trained.report.epochs_run)
    for a, b in zip(_leaves(grouped), _leaves(trained)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for bad in (dict(workers=-1), dict(workers=2, seed_batch=3)):
        with pytest.raises(ValueError, match="workers"):
            train.train_ensemble(x, y, m, CFG, **bad)


def test_workers_run_items_concurrently(monkeypatch):
    """workers=2: two host threads, each inside a call of the per-item program at the same time."""
    real = train._programs
    inside, most, threads = [0], [0], set()
    lock = threading.Lock()

    class Recording:
        def __init__(self, progs):
            self.init = progs.init
            self._run = progs.run

        def run(self, *args):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                threads.add(threading.current_thread().name)
            try:
                return jax.block_until_ready(self._run(*args))
            finally:
                with lock:
                    inside[0] -= 1

    monkeypatch.setattr(train, "_programs", lambda *a: Recording(real(*a)))
    train.train_ensemble(*_data(), CFG, workers=2)
    assert len(threads) == 2 and most[0] == 2


def test_no_recompile_for_other_seeds_or_feature_sets(trained):
    compiles = []

    def listen(event, secs, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        x2, y, m = _data(seed=1)
        other = train.train_ensemble(x2, y, m, dataclasses.replace(CFG, seeds=(7, 8, 9, 10)))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiles == []
    assert other.report.seeds == (7, 8, 9, 10)
    assert not np.allclose(other.report.best_val, trained.report.best_val)


def test_stacked_feature_sets_equal_separate_trainings(trained):
    x, y, m = _data()
    x2 = _data(seed=1)[0]
    stacked = train.train_ensembles(np.stack([x, x2]), y, m, CFG)
    separate = [trained, train.train_ensemble(x2, y, m, CFG)]
    for got, want in zip(stacked, separate):
        np.testing.assert_allclose(got.report.best_val, want.report.best_val, atol=1e-6)
        np.testing.assert_array_equal(got.report.epochs_run, want.report.epochs_run)
        assert got.seeds == want.seeds
        for a, b in zip(_leaves(got), _leaves(want)):
            np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[C, N, d\]"):
        train.train_ensembles(x, y, m, CFG)


def test_same_seed_same_result_and_keep_best(trained):
    again = train.train_ensemble(*_data(), CFG)
    for a, b in zip(_leaves(again), _leaves(trained)):
        np.testing.assert_array_equal(a, b)
    full = train.train_ensemble(*_data(), dataclasses.replace(CFG, keep=4))  # same program, all members kept
    order = np.argsort(full.report.best_val, kind="stable")
    assert full.seeds == tuple(CFG.seeds[i] for i in order)
    assert trained.seeds == full.seeds[:2]
    np.testing.assert_array_equal(trained.val_losses, np.sort(full.report.best_val)[:2])
    for a, b in zip(_leaves(trained), _leaves(full)):
        np.testing.assert_array_equal(a, b[:2])
    # the ensemble averages sigmoids of the kept members, not logits
    x = _data()[0][:5]
    members = [train.Ensemble(full.config, jax.tree.map(lambda a: a[i:i + 1], full.params), (s,), full.val_losses[i:i + 1])
               for i, s in enumerate(full.seeds)]
    np.testing.assert_allclose(full.predict(x), np.mean([e.predict(x) for e in members], axis=0), atol=1e-6)


def test_resume_after_interruption_equals_uninterrupted(trained, tmp_path):
    class Interrupt(Exception):
        pass

    def stop(epoch, state):
        if epoch >= 7:
            raise Interrupt

    cfg = dataclasses.replace(CFG, checkpoint_every=7)  # same compiled program, chunks of 7 epochs
    assert trained.report.epochs_run.max() > 7  # training outlasts the interruption
    with pytest.raises(Interrupt):
        train.train_ensemble(*_data(), cfg, checkpoint_dir=tmp_path / "ckpt", callback=stop)
    seen = []
    resumed = train.train_ensemble(*_data(), cfg, checkpoint_dir=tmp_path / "ckpt",
                                   callback=lambda e, s: seen.append(e))
    assert seen and seen[0] > 7  # it continued from epoch 7, not from scratch
    for a, b in zip(_leaves(resumed), _leaves(trained)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resumed.report.val_history, trained.report.val_history)
    with pytest.raises(ValueError, match="other data or config"):
        x, y, m = _data(seed=1)
        train.train_ensemble(x, y, m, cfg, checkpoint_dir=tmp_path / "ckpt")


def test_single_class_target_is_flagged(caplog):
    x, y, m = _data()
    y[m[:, 1], 1] = 1.0
    ens = train.train_ensemble(x, y, m, CFG, target_names=("a", "b", "c"))
    assert ens.report.single_class_targets == ("b",)
    assert ens.target_names == ("a", "b", "c")
    assert ens.predict(x)[:, 1].mean() > 0.5


def test_input_errors():
    x, y, m = _data()
    bad = x.copy()
    bad[[5, 9], 0] = np.nan
    with pytest.raises(ValueError, match=r"\[5, 9\]"):
        train.train_ensemble(bad, y, m, CFG)
    m2 = m.copy()
    m2[:, 2] = False
    with pytest.raises(ValueError, match="no observed training label"):
        train.train_ensemble(x, y, m2, CFG)
    with pytest.raises(ValueError, match="one N"):
        train.train_ensemble(x[:-1], y, m, CFG)
    y2 = y.copy()
    y2[0, 0], m2 = np.nan, m.copy()
    m2[0, 0] = True
    with pytest.raises(ValueError, match="must be 0 or 1"):
        train.train_ensemble(x, y2, m2, CFG)
    with pytest.raises(ValueError, match="keep"):
        train.TrainConfig(seeds=(1, 2), keep=3)


def test_generic_seed_model():
    """train_seeds with a user model: logistic regression on one target, data in a dict with an extra field."""
    x, y, m = _data()

    def init(key):
        return {"w": jax.random.normal(key, (D,)) * 0.01, "b": jnp.zeros(())}

    def loss(params, batch, row_w, dropout_key):
        z = batch["x"] @ params["w"] + params["b"] + 0.0 * batch["offset"]
        per = optax.sigmoid_binary_cross_entropy(z, batch["y"])
        return jnp.sum(per * row_w) / jnp.sum(row_w)

    model = train.SeedModel(init, loss, "logreg")
    data = {"x": x, "y": np.nan_to_num(y[:, 0]), "offset": np.zeros(N, np.float32)}
    runs = train.train_seeds(model, data, CFG)
    rep = runs.report
    assert rep.best_val.shape == (4,) and runs.best_params["w"].shape == (4, D)
    assert np.all(rep.best_val < np.log(2))  # better than the 0.5 guess
    np.testing.assert_array_equal(runs.kept(), np.argsort(rep.best_val, kind="stable")[:2])
    assert rep.kept_seeds == tuple(CFG.seeds[i] for i in runs.kept())
    with pytest.raises(ValueError, match="same number of rows"):
        train.train_seeds(model, {**data, "offset": np.zeros(N + 1, np.float32)}, CFG)


def test_trunk_loss_by_hand_and_trunk_model_composes_it():
    """trunk_loss: BCE averaged over observed entries of weighted rows; logits 0 -> log 2, logit 2 on a 1 ->
    log(1 + e^-2). trunk_model's loss is trunk_loss of trunk_logits (what a variant adds its terms to)."""
    z = jnp.array([[0.0, 2.0], [0.0, 0.0], [5.0, 5.0]])
    batch = {"y": jnp.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]), "m": jnp.array([[1.0, 1.0], [1.0, 0.0], [1, 1]])}
    row_w = jnp.array([1.0, 1.0, 0.0])  # the last row is padding
    want = (np.log(2) + np.log1p(np.exp(-2.0)) + np.log(2)) / 3
    assert float(train.trunk_loss(z, batch, row_w)) == pytest.approx(want, rel=1e-6)
    trunk = train.TrainConfig(hidden=(8,), dropout=(0.0,)).trunk(D, 2)
    seed_model = train.trunk_model(trunk)
    params = seed_model.init(jax.random.PRNGKey(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, D)), jnp.float32)
    logits = train.trunk_logits(model_lib.graphdef_of(trunk), params, {"x": x}, None)
    assert logits.shape == (3, 2)
    assert float(seed_model.loss(params, {"x": x, **batch}, row_w, None)) == pytest.approx(
        float(train.trunk_loss(logits, batch, row_w)))
