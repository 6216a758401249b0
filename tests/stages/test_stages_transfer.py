"""Transfer stages: the test-AUC bootstrap, the readout controls and the PCA grid."""
import numpy as np
import pytest

from prefill_router.stages import features, transfer


def test_auc_with_ci_brackets_the_estimate():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1], float)
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.5, 0.3])
    from sklearn.metrics import roc_auc_score
    out = transfer.auc_with_ci(s, y, n_boot=200, seed=0)
    assert out["auc"] == pytest.approx(roc_auc_score(y, s))
    assert out["ci_low"] <= out["auc"] <= out["ci_high"]


def test_readout_controls_change_only_the_prompt_tail():
    from prefill_router.encoders import registry
    enc = registry.load_encoder("tiny_llama")
    q = "What is 2 + 3?\nOptions: 4 | 5"
    chat = features.readout_encoder(enc, "chat", {})
    nogen = features.readout_encoder(enc, "no_gen_prompt", {})
    raw = features.readout_encoder(enc, "raw", {})
    assert chat[0].tokenizer.render(q, chat[1]).endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert nogen[0].tokenizer.render(q, nogen[1]).endswith(q + "<|im_end|>\n")
    assert raw[0].tokenizer.render(q, raw[1]) == q
    assert raw[0].identity != enc.identity  # distinct feature-cache key
    with pytest.raises(ValueError, match="template control"):
        features.readout_encoder(enc, "bogus", {})


def test_pca_grid_clips_to_data():
    assert transfer.pca_grid((16, 64), D=32, n_fit=20) == (16, 20)
    assert transfer.pca_grid((4,), D=2, n_fit=50) == (2,)
