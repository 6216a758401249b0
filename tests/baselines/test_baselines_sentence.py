"""tiny_bert: the toy byte-level vocabulary of the encoders, framed like BERT, and unit-norm embeddings."""
import numpy as np

from prefill_router.baselines import sentence
from prefill_router.encoders.tokenizer import PromptTokenizer


def test_tiny_bert_tokenizer_is_the_byte_level_vocabulary_with_cls_and_sep():
    byte_level = PromptTokenizer.byte_level()
    ids = sentence._byte_tokenizer().encode("hé x").ids
    assert ids == [byte_level.bos_id, *"hé x".encode("utf-8"), byte_level.eos_id]


def test_tiny_bert_embeds_unit_norm_rows():
    emb = sentence.load_sentence_encoder("tiny_bert").embed(["a b", "hello world", "a b"])
    assert emb.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(emb[0], emb[2], rtol=1e-6)
    assert not np.allclose(emb[0], emb[1])


def test_embed_prompts_caches_per_ordered_prompt_list(tmp_path, monkeypatch):
    prompts = ["a b", "hello world"]
    first = sentence.embed_prompts("tiny_bert", prompts, tmp_path)
    (cached,) = (tmp_path / "sentence").glob("*.npy")

    def no_model(*args, **kwargs):
        raise AssertionError("the cached embeddings should have been read")

    monkeypatch.setattr(sentence, "load_sentence_encoder", no_model)
    np.testing.assert_array_equal(sentence.embed_prompts("tiny_bert", prompts, tmp_path), first)
    monkeypatch.undo()
    swapped = sentence.embed_prompts("tiny_bert", prompts[::-1], tmp_path)  # another order: another entry
    np.testing.assert_array_equal(swapped, first[::-1])
    assert len(list((tmp_path / "sentence").glob("*.npy"))) == 2
    cached.write_bytes(b"garbage")  # unreadable: recomputed and rewritten
    np.testing.assert_array_equal(sentence.embed_prompts("tiny_bert", prompts, tmp_path), first)
    np.testing.assert_array_equal(np.load(cached), first)
