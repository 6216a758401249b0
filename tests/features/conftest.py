"""The tiny encoder of the feature tests: random llama (seed 0) + a byte-level tokenizer.

Also loaded by path by the multi-process worker script of test_features_distributed.py (plain Python,
no pytest machinery), so the module must not configure JAX itself.
"""
import types

import pytest

from prefill_router import encoders


class ByteTok:
    """Bytes -> ids in [3, 61) (tiny vocab); `think` in the template kwargs appends a marker."""
    pad_id = 0

    def render(self, q, template_kwargs):
        return f"<u>{q}</u>" + ("<think>" if template_kwargs.get("think") else "")

    def encode_batch(self, texts, max_length=None, truncate="warn"):
        ids = [[b % 58 + 3 for b in t.encode("utf-8")] for t in texts]
        n = sum(max_length is not None and len(t) > max_length for t in ids)
        if max_length is not None:
            ids = [t[:max_length] for t in ids]
        return ids, n


def tiny_encoder() -> types.SimpleNamespace:
    return types.SimpleNamespace(name="tiny_llama", model=encoders.random_model("llama", seed=0),
                                 tokenizer=ByteTok(), identity={"name": "tiny_llama", "seed": 0})


@pytest.fixture(scope="module")
def enc():
    return tiny_encoder()
