"""PromptTokenizer: template rendering vs transformers, BOS rule, truncation, GGUF tokenizer rebuilds."""
import gzip
import json

import pytest
import tokenizers

from prefill_router import assets
from prefill_router.encoders import tokenizer as tok_mod
from prefill_router.encoders.gguf import read_metadata
from prefill_router.encoders.registry import ENCODERS
from prefill_router.encoders.tokenizer import PromptTokenizer

EDGE_TEXTS = ["Hello world 12345  x\n\n  é", "What is 2+2? Answer: 4.", "  leading spaces\tand\ttabs\r\n",
              "Ünïcödé — “quotes” 日本語のテキスト 😀 emoji", "def f(x):\n    return x**2  # comment\n",
              "A\u00a0B\u2009C", "1234567890 3.14159 -42 1e10", " ", "\n\n\n", "ﬁ ligature Å Å",
              "<|im_start|>user\nhi<|im_end|>\n", "<bos>hello <eos> <start_of_turn>user"]


def _hf_render(template, question, **kw):
    """transformers' own rendering of `template` (reference)."""
    from transformers import PreTrainedTokenizerFast
    ref = PreTrainedTokenizerFast(tokenizer_object=PromptTokenizer.byte_level().tokenizer,
                                  bos_token="<|bos|>", eos_token="<|eos|>", chat_template=template)
    return ref.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                   add_generation_prompt=True, **kw)


# A template exercising what HF templates use: trim/lstrip blocks, loop controls, tojson,
# raise_exception, bos_token, and extra kwargs.
TEMPLATE = """{%- if messages[0]['role'] == 'assistant' %}
    {{- raise_exception('first message must be from the user') }}
{%- endif %}
{{ bos_token }}
{% for m in messages %}
    {% if m['role'] == 'system' %}{% continue %}{% endif %}
    <|{{ m['role'] }}|>{{ m['content'] | trim }}
    {{ {'n': loop.index, 'who': m['role'], 'txt': 'é'} | tojson }}
{% endfor %}
{% if add_generation_prompt %}<|assistant|>{% if enable_thinking is defined and not enable_thinking %}<no_think>{% endif %}
{% endif %}"""


@pytest.mark.parametrize("kwargs", [{}, {"enable_thinking": False}])
def test_render_matches_transformers(kwargs):
    tok = PromptTokenizer(PromptTokenizer.byte_level().tokenizer, chat_template=TEMPLATE,
                          bos_token="<|bos|>", eos_token="<|eos|>")
    q = "  What is 7*6?  \nThink.\n"
    assert tok.render(q, template_kwargs=kwargs) == _hf_render(TEMPLATE, q, **kwargs)
    with pytest.raises(Exception, match="first message must be from the user"):
        tok_mod._compile_template(TEMPLATE).render(messages=[{"role": "assistant", "content": "x"}])


def test_no_template_renders_raw_and_byte_level_roundtrip():
    tok = PromptTokenizer.byte_level()
    assert tok.vocab_size == 261 and (tok.pad_id, tok.bos_id, tok.eos_id) == (256, 257, 258)
    text = "héllo 日本 😀\n\t"
    assert tok.without_template().render(text) == text
    rendered = tok.render(text)
    assert rendered == f"<|bos|><|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    (ids,), n = tok.encode_batch([rendered])
    assert n == 0 and ids[0] == 257 and ids.count(257) == 1  # BOS already in the text: not added twice
    assert ids[1] == 259 and ids[-1] == ord("\n") and tok.decode(ids) == rendered
    (raw,), _ = tok.encode_batch([text])  # add_bos tokenizer, text without BOS: BOS prepended
    assert raw == [257] + list(text.encode("utf-8"))


def test_truncation_keeps_head_and_tail(caplog):
    tok = PromptTokenizer.byte_level().without_template()
    texts = ["abcdefghij", "abc"]
    ids, n = tok.encode_batch(texts, max_length=5)
    assert n == 1
    full = [257] + list(b"abcdefghij")
    assert ids[0] == full[:2] + full[-3:] and ids[1] == [257] + list(b"abc")
    with pytest.raises(ValueError, match="1 of 2 prompts are longer than max_length=5"):
        tok.encode_batch(texts, max_length=5, truncate="error")
    with pytest.raises(ValueError, match="truncate must be"):
        tok.encode_batch(texts, truncate="cut")


def test_from_dir_roundtrip(tmp_path):
    tok = PromptTokenizer(PromptTokenizer.byte_level().tokenizer, chat_template=TEMPLATE,
                          bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>", add_bos=True)
    tok.save(tmp_path)
    back = PromptTokenizer.from_dir(tmp_path)
    assert back.render("q") == tok.render("q") and back.add_bos and back.pad_id == 256
    assert back.encode_batch(EDGE_TEXTS) == tok.encode_batch(EDGE_TEXTS)
    (tmp_path / "chat_template.jinja").write_text("{{ messages[0]['content'] }}!")
    assert PromptTokenizer.from_dir(tmp_path).render("q") == "q!"
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        PromptTokenizer.from_dir(tmp_path / "nope")


def test_gemma_merges_rank_by_position_then_longer_left():
    tokens = ["a", "b", "c", "abc", "ab", "bc"]
    # 'abc' (index 3) splits as ab+c (cut 2) and a+bc (cut 1): longer left first; then 'ab', 'bc'.
    assert tok_mod.gemma_merges(tokens) == [("ab", "c"), ("a", "bc"), ("a", "b"), ("b", "c")]


# ------------------------------------------------------------------------- real tokenizers
def _gguf_path(name, require_asset):
    try:
        return assets.resolve(ENCODERS[name].weights)
    except (RuntimeError, OSError) as e:
        require_asset(f"could not fetch {name}: {e}")


def _real_prompts(shared_data, n=12):
    with gzip.open(shared_data / "routing/llmrouter_dcrouter/train.json.gz", "rt") as f:
        rows = json.load(f)
    step = len(rows) // n
    return [rows[i * step]["question"] for i in range(n)]


def _tok_meta(path):
    return {k: v for k, v in read_metadata(path).items() if k.startswith("tokenizer.")}


@pytest.mark.real_weights
def test_smollm2_gguf_tokenizer_equals_official_and_template(shared_data, require_asset):
    ours = PromptTokenizer.from_gguf_metadata(_tok_meta(_gguf_path("smollm2_135m", require_asset)))
    with gzip.open(shared_data / "tokenizers/smollm2-135m-instruct/tokenizer.json.gz", "rt") as f:
        official = tokenizers.Tokenizer.from_str(f.read())
    assert ours.tokenizer.get_vocab() == official.get_vocab()
    prompts = _real_prompts(shared_data) + EDGE_TEXTS
    for text in prompts + [ours.render(p) for p in prompts[:3]]:
        assert ours.tokenizer.encode(text, add_special_tokens=False).ids == \
            official.encode(text, add_special_tokens=False).ids, text
    assert (ours.bos_id, ours.eos_id, ours.pad_id, ours.add_bos) == (1, 2, 2, False)
    for q in prompts[:4]:
        assert ours.render(q) == _hf_render(ours.chat_template, q)
    ids, _ = ours.encode_batch([ours.render(prompts[0])])
    assert ids[0][0] == 1 and ids[0].count(1) == 3  # <|im_start|> x3 (system, user, assistant)


@pytest.mark.real_weights
@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen25_coder_05b", "gemma3_270m"])
def test_gguf_tokenizer_equals_transformers(name, shared_data, require_asset):
    from transformers import AutoTokenizer
    path = _gguf_path(name, require_asset)
    ours = PromptTokenizer.from_gguf_metadata(_tok_meta(path))
    ref = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    prompts = _real_prompts(shared_data) + EDGE_TEXTS
    texts = [ours.render(p) for p in prompts]
    if ours.chat_template:
        assert texts == [ref.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                 add_generation_prompt=True) for p in prompts]
    else:
        assert texts == prompts
    ids, _ = ours.encode_batch(texts)
    # Policy (method.md §2): a text that already starts with BOS gets no second one; transformers would add it.
    assert ids == [ref(t, add_special_tokens=not t.startswith(ref.bos_token or "\0")).input_ids for t in texts]
    assert ours.vocab_size == len(ref)
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (ref.bos_token_id, ref.eos_token_id, ref.pad_token_id)
