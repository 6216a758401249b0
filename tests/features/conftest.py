"""The tiny encoder of the feature tests: the registry's `tiny_llama` (random llama, seed 0, with the library's
byte-level tokenizer `PromptTokenizer.byte_level`: one token per byte, one per special).

Also loaded by path by the multi-process worker scripts of test_features_distributed.py and
test_features_extract.py (plain Python, no pytest machinery), so the module must not configure JAX itself.
"""
import pytest

from prefill_router.encoders import registry


def tiny_encoder() -> registry.LoadedEncoder:
    return registry.load_encoder("tiny_llama")


@pytest.fixture(scope="module")
def enc():
    return tiny_encoder()
