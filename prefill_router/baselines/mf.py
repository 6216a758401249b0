"""Matrix-factorisation router (RouteLLM `mf` / EmbedLLM style) on sentence embeddings.

Each target t has a learned r-dim embedding u_t; a prompt embedding e(q) is projected by A [D, r]:

    logit[q, t] = u_t . (A^T e(q)) + b_t,        p_hat_t(q) = sigmoid(logit[q, t]).

Trained full-batch with Adam on the masked binary cross-entropy plus an L2 penalty, early-stopped
on a validation split carved from the training rows (best parameters restored).
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class MFConfig:
    rank: int = 16
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    max_steps: int = 2000
    patience: int = 100
    val_fraction: float = 0.15
    seed: int = 0


def _logits(params, emb):
    return (emb @ params["proj"]) @ params["targets"].T + params["bias"]


def _masked_bce(params, emb, labels, mask):
    loss = optax.sigmoid_binary_cross_entropy(_logits(params, emb), jnp.where(mask, labels, 0.0))
    return jnp.sum(loss * mask) / jnp.maximum(mask.sum(), 1)


@dataclasses.dataclass
class MFRouter:
    params: dict
    config: MFConfig
    steps: int

    def predict(self, emb: np.ndarray) -> np.ndarray:
        return np.asarray(jax.nn.sigmoid(_logits(self.params, jnp.asarray(emb, jnp.float32))))


def fit_mf(emb: np.ndarray, labels: np.ndarray, mask: np.ndarray, config: MFConfig = MFConfig()) -> MFRouter:
    """emb [N, D] training embeddings, labels/mask [N, K] -> fitted MFRouter."""
    n, d = emb.shape
    k = labels.shape[1]
    order = np.random.default_rng(config.seed).permutation(n)
    n_val = max(1, int(round(config.val_fraction * n)))
    val, fit = order[:n_val], order[n_val:]
    key_a, key_u = jax.random.split(jax.random.key(config.seed))
    params = {"proj": jax.random.normal(key_a, (d, config.rank)) / np.sqrt(d),
              "targets": jax.random.normal(key_u, (k, config.rank)) / np.sqrt(config.rank),
              "bias": jnp.zeros((k,))}
    tx = optax.chain(optax.add_decayed_weights(config.weight_decay), optax.adam(config.learning_rate))
    arrays = lambda rows: (jnp.asarray(emb[rows], jnp.float32), jnp.asarray(np.nan_to_num(labels[rows])),
                           jnp.asarray(mask[rows]))
    train_set, val_set = arrays(fit), arrays(val)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(_masked_bce)(params, *train_set)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, _masked_bce(params, *val_set)

    opt_state = tx.init(params)
    best, best_params, since, steps = np.inf, params, 0, 0
    for steps in range(1, config.max_steps + 1):
        new_params, opt_state, val_loss = step(params, opt_state)
        # val_loss is measured at `params` (before this update).
        if float(val_loss) < best - 1e-5:
            best, best_params, since = float(val_loss), params, 0
        else:
            since += 1
            if since >= config.patience:
                break
        params = new_params
    return MFRouter(best_params, config, steps)
