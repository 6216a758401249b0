"""Adding a family touches only its folder and the registry: a toy fifth family, defined here as its folder
would define it (a parallel-block forward as in GPT-J, its own HF config names and tensor names), is
registered, built, run against a numpy reference of its forward, loaded from an HF-style dict and served by
`load_encoder`, without any other library change."""
import numpy as np
import pytest

from prefill_router.encoders import build_model, config_from_hf, families, random_model, to_hf_config
from prefill_router.encoders import config as C
from prefill_router.encoders.base import Modeling
from prefill_router.encoders.family import Family
from prefill_router.encoders.keymap import Rule, Transform
from prefill_router.encoders.registry import EncoderSpec, load_encoder


# ---------------------------------------------------------------------- the toy family's folder
def _parallel_block(s, x):
    """x + Attn(norm(x)) + MLP(norm(x)): attention and MLP read the same normed input."""
    h = s.norm(x, "norm")
    return x + s.attention(h) + s.mlp(h)


_FIELDS = {"model_type": "toy_parallel", "n_vocab": "vocab_size", "d_model": "hidden_size", "d_ff": "intermediate_size",
           "n_layer": "num_layers", "n_head": "num_heads", "n_kv_head": "num_kv_heads", "d_head": "head_dim",
           "eps": "rms_norm_eps", "rope_base": "rope_theta", "n_ctx": "max_position_embeddings",
           "tied": "tie_word_embeddings"}


def _hf_fields(d):
    C.check_fields(d, set(_FIELDS), set(), "toy_parallel")
    return {ours: C.require(d, theirs, "toy_parallel") for theirs, ours in _FIELDS.items() if theirs != "model_type"}


def _to_hf(cfg):
    return {theirs: getattr(cfg, ours) for theirs, ours in _FIELDS.items() if theirs != "model_type"}


_L = r"h\.(\d+)\."
TOY = Family(
    name="toy", model_types=("toy_parallel",), hf_fields=_hf_fields, to_hf=_to_hf,
    modeling=Modeling(block=_parallel_block, block_norms=("norm",)),
    key_map=(Rule(r"wte\.weight", ("embed",)), Rule(r"ln_f\.weight", ("final_norm",)),
             Rule(r"head\.weight", ("lm_head",), Transform.LINEAR),
             Rule(_L + r"ln\.weight", ("blocks", "norm")),
             *(Rule(_L + rf"attn\.{n}\.weight", ("blocks", n), Transform.LINEAR) for n in ("q", "k", "v")),
             Rule(_L + r"attn\.o\.weight", ("blocks", "o"), Transform.ATTN_O),
             *(Rule(_L + rf"mlp\.{n}\.weight", ("blocks", n), Transform.LINEAR) for n in ("gate", "up", "down"))),
    tiny=dict(tie_word_embeddings=False, pad_token_id=None, bos_token_id=None, eos_token_id=None))


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(families, "FAMILIES", dict(families.FAMILIES))   # unregistered again after the test
    return families.register(TOY)


# ---------------------------------------------------------------------- reference and HF-style checkpoint
def _reference_hidden(model, ids):
    """numpy forward of one unpadded row ids [T] -> residual stream [L+1, T, D] (float64)."""
    cfg, blocks = model.config, {k: np.asarray(v, np.float64) for k, v in model.blocks.arrays().items()}
    t, h = len(ids), cfg.head_dim
    x = np.asarray(model.embed[...], np.float64)[ids]
    inv = 1.0 / cfg.rope_theta ** (np.arange(0, h, 2) / h)
    ang = np.arange(t)[:, None] * inv                                        # [T, H/2]
    cos, sin = np.cos(ang)[:, None], np.sin(ang)[:, None]

    def rope(z):                                                              # [T, heads, H], rotate-half
        z1, z2 = z[..., :h // 2], z[..., h // 2:]
        return np.concatenate([z1 * cos - z2 * sin, z2 * cos + z1 * sin], -1)

    out = [x]
    for i in range(cfg.num_layers):
        p = {k: v[i] for k, v in blocks.items()}
        n = x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.rms_norm_eps) * p["norm"]
        q = rope(np.einsum("td,dnh->tnh", n, p["q"]))
        k = np.repeat(rope(np.einsum("td,dkh->tkh", n, p["k"])), cfg.num_heads // cfg.num_kv_heads, axis=1)
        v = np.repeat(np.einsum("td,dkh->tkh", n, p["v"]), cfg.num_heads // cfg.num_kv_heads, axis=1)
        s = np.einsum("tnh,snh->nts", q, k) / np.sqrt(h) + np.triu(np.full((t, t), -np.inf), 1)
        w = np.exp(s - s.max(-1, keepdims=True))
        a = np.einsum("nts,snh->tnh", w / w.sum(-1, keepdims=True), v)
        gate = n @ p["gate"]
        x = x + np.einsum("tnh,nhd->td", a, p["o"]) + (gate / (1 + np.exp(-gate)) * (n @ p["up"])) @ p["down"]
        out.append(x)
    return np.stack(out)


def _toy_checkpoint(model):
    """The toy's HF-style tensors, written out by hand (torch Linear layout [out, in])."""
    cfg, b = model.config, {k: np.asarray(v) for k, v in model.blocks.arrays().items()}
    t = {"wte.weight": np.asarray(model.embed[...]), "ln_f.weight": np.asarray(model.final_norm[...]),
         "head.weight": np.asarray(model.lm_head[...]).T}
    for i in range(cfg.num_layers):
        t[f"h.{i}.ln.weight"] = b["norm"][i]
        for n in ("q", "k", "v"):
            t[f"h.{i}.attn.{n}.weight"] = b[n][i].reshape(cfg.hidden_size, -1).T
        t[f"h.{i}.attn.o.weight"] = b["o"][i].reshape(-1, cfg.hidden_size).T
        for n in ("gate", "up", "down"):
            t[f"h.{i}.mlp.{n}.weight"] = b[n][i].T
    return t


# ---------------------------------------------------------------------- the acceptance test
def test_toy_family_registered_built_run_and_loaded(toy):
    model = random_model("toy", seed=0)
    assert model.config.family == "toy" and model.modeling is TOY.modeling
    ids = np.array([[5, 9, 11, 3, 7, 2, 8]], np.int32)
    out = model(ids, np.ones_like(ids), return_hidden=True)
    np.testing.assert_allclose(np.asarray(out.hidden)[:, 0], _reference_hidden(model, ids[0]), atol=1e-4, rtol=0)

    hf_config = to_hf_config(model.config)
    assert hf_config["model_type"] == "toy_parallel" and hf_config["n_layer"] == 3
    assert config_from_hf(hf_config) == model.config
    loaded = build_model(hf_config, _toy_checkpoint(model))
    np.testing.assert_array_equal(np.asarray(loaded(ids, np.ones_like(ids)).last), np.asarray(out.last))

    enc = load_encoder(EncoderSpec("tiny_toy", "toy", "random", random_overrides=(("vocab_size", 261),)))
    ids = np.array(enc.tokenizer.encode_batch([enc.tokenizer.render("2+2?")])[0], np.int32)
    assert enc.model(ids, np.ones_like(ids)).last.shape == (4, 1, 44)


def test_toy_family_keeps_the_registry_rules(toy):
    with pytest.raises(ValueError, match=r"name \['toy'\] already registered"):
        families.register(TOY)
    with pytest.raises(ValueError, match=r"model_types \['llama'\] already registered"):
        families.register(Family(**{**vars(TOY), "name": "toy2", "model_types": ("llama",)}))
    with pytest.raises(ValueError, match=r"fields this port does not handle: \['parallel_attn'\]"):
        config_from_hf(dict(to_hf_config(random_model("toy").config), parallel_attn=True))
    with pytest.raises(ValueError, match=r"toy_parallel configs cannot express \['qk_norm'\]"):
        to_hf_config(TOY.tiny_config(qk_norm=True))
