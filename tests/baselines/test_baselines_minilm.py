"""MiniLM (BERT) port: parity with transformers' BertModel + sentence-transformers pooling."""
import json

import numpy as np
import pytest

from prefill_router.baselines import minilm

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _tiny_hf_bert(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=61, hidden_size=30, num_hidden_layers=2, num_attention_heads=3,
                                  intermediate_size=37, max_position_embeddings=40, attn_implementation="eager")
    model = transformers.BertModel(cfg).eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    return model


def test_minilm_matches_transformers_mean_pooled_embeddings(tmp_path):
    ref = _tiny_hf_bert(tmp_path)
    cfg = minilm.BertConfig.from_hf_config(json.loads((tmp_path / "config.json").read_text()))
    import safetensors.numpy
    ours = minilm.from_tensors(cfg, safetensors.numpy.load_file(str(tmp_path / "model.safetensors")))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 61, size=(3, 11)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    with torch.no_grad():
        h = ref(input_ids=torch.tensor(ids, dtype=torch.long),
                attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    m = mask[..., None]
    pooled = (h * m).sum(1) / m.sum(1)
    expected = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(ours.hidden_states(ids, mask)) * m, h * m, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours(ids, mask)), expected, atol=1e-5)


def test_minilm_rejects_unknown_config_field_and_missing_tensor(tmp_path):
    _tiny_hf_bert(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    with pytest.raises(ValueError, match="not handled"):
        minilm.BertConfig.from_hf_config({**config, "rope_theta": 1.0})
    import safetensors.numpy
    tensors = safetensors.numpy.load_file(str(tmp_path / "model.safetensors"))
    del tensors["encoder.layer.1.output.dense.weight"]
    with pytest.raises(ValueError, match="not found"):
        minilm.from_tensors(minilm.BertConfig.from_hf_config(config), tensors)


@pytest.mark.real_weights
def test_real_minilm_matches_transformers_on_real_prompts(require_asset):
    from prefill_router.baselines import sentence
    try:
        enc = sentence.load_sentence_encoder("minilm_l6")
    except (OSError, RuntimeError) as e:
        require_asset(f"all-MiniLM-L6-v2 could not be fetched: {e}")
    prompts = ["How many legs does a spider have?", "Translate 'good morning' into French.",
               "Write a Python function that reverses a linked list in place, and explain its complexity."]
    ours = enc.embed(prompts)
    path = sentence.assets.resolve(sentence.MINILM_L6)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    ref = transformers.AutoModel.from_pretrained(path).eval()
    batch = tok(prompts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        h = ref(**batch).last_hidden_state.numpy()
    m = batch["attention_mask"].numpy()[..., None]
    pooled = (h * m).sum(1) / m.sum(1)
    expected = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
    np.testing.assert_allclose(ours, expected, atol=2e-5)
