"""Prompt tokenizer of an encoder: chat-template rendering and batch encoding.

    tok = PromptTokenizer.from_dir(path)              # tokenizer.json (+ tokenizer_config.json / chat_template.jinja)
    tok = PromptTokenizer.from_gguf_metadata(meta)    # rebuilt from a GGUF file's tokenizer.* fields
    tok = PromptTokenizer.byte_level()                # 256 bytes + 5 specials, for tiny random encoders
    text = tok.render(question)                       # chat template, add_generation_prompt=True
    ids, n_cut = tok.encode_batch(texts, max_length=512)

GGUF rebuilds (verified token-for-token against reference tokenizers in the tests):
    * ``gpt2`` vocabularies (byte-level BPE with the file's merges): pre-tokenizer by
      ``tokenizer.ggml.pre``, from the family records' ``pre_splits`` (``families.pre_split``):
      e.g. 'smollm' -> Digits(individual) + ByteLevel, as SmolLM2's official tokenizer.json;
      'qwen2' -> Qwen2's regex Split + ByteLevel(use_regex=False); unknown -> GPT-2's ByteLevel regex.
    * ``llama`` (SentencePiece) vocabularies of Gemma: BPE with byte fallback; spaces are
      normalised to U+2581; there are no merges in the file, so they are derived from the vocab:
      every split of a token into two vocabulary pieces is a merge, ranked by the token's position
      in the file (earlier first), then by longer left piece (Gemma's scores do not follow its
      merge order; this is also what transformers does).
    Tokens typed CONTROL (3) are added as special tokens, USER_DEFINED (4) as plain added tokens.

BOS rule: when the rendered text already starts with the BOS token string, no BOS is added;
otherwise BOS is prepended iff the model's tokenizer adds one (Gemma). EOS is never appended.
"""
import datetime
import gzip
import json
import os
import pathlib

import jinja2
import jinja2.sandbox
import tokenizers
from absl import logging
from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers

from prefill_router.encoders import families

_CONTROL, _USER_DEFINED = 3, 4
_BYTE_LEVEL_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                        "{{ m['content'] }}<|im_end|>\n{% endfor %}"
                        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (ByteLevel's alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt):
    return datetime.datetime.now().strftime(fmt)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _compile_template(source: str) -> jinja2.Template:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


def _token_str(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


class PromptTokenizer:
    """A ``tokenizers.Tokenizer`` plus chat template, special tokens and the BOS rule."""

    def __init__(self, tokenizer: tokenizers.Tokenizer, *, chat_template: str | None = None,
                 bos_token: str | None = None, eos_token: str | None = None,
                 pad_token: str | None = None, add_bos: bool = False, name: str = ""):
        self.tokenizer = tokenizer
        self.chat_template = chat_template or None
        self.bos_token, self.eos_token, self.pad_token = bos_token, eos_token, pad_token
        self.add_bos = add_bos
        self.name = name
        for label, token in (("bos", bos_token), ("eos", eos_token), ("pad", pad_token)):
            if token is not None and tokenizer.token_to_id(token) is None:
                raise ValueError(f"{label} token {token!r} is not in the vocabulary of tokenizer {name!r}")
        if add_bos and bos_token is None:
            raise ValueError(f"tokenizer {name!r} adds BOS but has no bos token")
        self._template = _compile_template(self.chat_template) if self.chat_template else None

    # ----------------------------------------------------------------------------------------
    # constructors
    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> "PromptTokenizer":
        """From an HF directory: tokenizer.json[.gz], tokenizer_config.json, chat_template.jinja,
        config.json (special token ids when tokenizer_config.json is absent)."""
        path = pathlib.Path(path)
        if (path / "tokenizer.json").is_file():
            tok = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        elif (path / "tokenizer.json.gz").is_file():
            with gzip.open(path / "tokenizer.json.gz", "rt", encoding="utf-8") as f:
                tok = tokenizers.Tokenizer.from_str(f.read())
        else:
            raise FileNotFoundError(f"{path} has no tokenizer.json(.gz); point at an HF model directory")
        tcfg = json.loads((path / "tokenizer_config.json").read_text()) \
            if (path / "tokenizer_config.json").is_file() else {}
        mcfg = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
        template = tcfg.get("chat_template")
        if isinstance(template, list):  # [{'name': 'default', 'template': ...}, ...]
            template = {t["name"]: t["template"] for t in template}.get("default")
        if (path / "chat_template.jinja").is_file():
            template = (path / "chat_template.jinja").read_text()

        def special(name):
            token = _token_str(tcfg.get(f"{name}_token"))
            if token is None and mcfg.get(f"{name}_token_id") is not None:
                token = tok.id_to_token(int(mcfg[f"{name}_token_id"]))
            return token

        bos = special("bos")
        if "add_bos_token" in tcfg:
            add_bos = bool(tcfg["add_bos_token"])
        else:  # does the post-processor prepend BOS?
            add_bos = bos is not None and tok.encode("a", add_special_tokens=True).ids[:1] == \
                [tok.token_to_id(bos)]
        return cls(tok, chat_template=template, bos_token=bos, eos_token=special("eos"),
                   pad_token=special("pad"), add_bos=add_bos, name=str(path))

    @classmethod
    def from_gguf_metadata(cls, meta: dict) -> "PromptTokenizer":
        """Rebuild the tokenizer from GGUF ``tokenizer.*`` fields (see the module docstring)."""
        model = meta.get("tokenizer.ggml.model")
        tokens = list(meta.get("tokenizer.ggml.tokens") or [])
        if not tokens:
            raise ValueError("GGUF metadata has no tokenizer.ggml.tokens; this file carries no tokenizer")
        types = [int(t) for t in meta.get("tokenizer.ggml.token_type", [1] * len(tokens))]
        original = tokens
        if model == "gpt2":
            tok, tokens = _byte_level_bpe(tokens, meta)
        elif model == "llama":
            tok, tokens = _sentencepiece_bpe(tokens, meta)
        else:
            raise ValueError(f"GGUF tokenizer model {model!r} is not supported; supported: 'gpt2' "
                             "(byte-level BPE) and 'llama' (SentencePiece, Gemma-style)")
        alphabet = set(_byte_alphabet().values()) if model == "gpt2" else None
        control = [AddedToken(t, normalized=False, special=True) for t, ty in zip(tokens, types)
                   if ty == _CONTROL and (alphabet is None or set(t) <= alphabet)]
        # A respelled user-defined token (Gemma's runs of spaces) is reached by the BPE instead.
        user = [AddedToken(t, normalized=False, special=False)
                for t, t0, ty in zip(tokens, original, types) if ty == _USER_DEFINED and t == t0]
        tok.add_special_tokens(control)
        tok.add_tokens(user)

        def special(key):
            i = meta.get(f"tokenizer.ggml.{key}_token_id")
            return None if i is None else tokens[int(i)]

        add_bos = meta.get("tokenizer.ggml.add_bos_token")
        if add_bos is None:
            add_bos = model == "llama"  # llama.cpp's default for SentencePiece vocabularies
        return cls(tok, chat_template=meta.get("tokenizer.chat_template"), bos_token=special("bos"),
                   eos_token=special("eos"), pad_token=special("padding"), add_bos=bool(add_bos),
                   name=f"gguf:{meta.get('tokenizer.ggml.pre', model)}")

    @classmethod
    def byte_level(cls) -> "PromptTokenizer":
        """Ids 0..255 are the bytes; 256..260 are <|pad|> <|bos|> <|eos|> <|im_start|> <|im_end|>.

        The template is ChatML-like: ``<|bos|><|im_start|>user\\n{q}<|im_end|>\\n<|im_start|>assistant\\n``.
        """
        alphabet = _byte_alphabet()
        vocab = {alphabet[b]: b for b in range(256)}
        tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
        specials = ["<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"]
        tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
        return cls(tok, chat_template=_BYTE_LEVEL_TEMPLATE, bos_token="<|bos|>", eos_token="<|eos|>",
                   pad_token="<|pad|>", add_bos=True, name="byte_level")

    def save(self, path: str | os.PathLike) -> None:
        """Write tokenizer.json + tokenizer_config.json into directory ``path`` (read by from_dir)."""
        path = pathlib.Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path / "tokenizer.json"))
        cfg = {"chat_template": self.chat_template, "bos_token": self.bos_token,
               "eos_token": self.eos_token, "pad_token": self.pad_token, "add_bos_token": self.add_bos}
        (path / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))

    def without_template(self) -> "PromptTokenizer":
        """A copy whose render() returns the raw question."""
        return PromptTokenizer(self.tokenizer, chat_template=None, bos_token=self.bos_token,
                               eos_token=self.eos_token, pad_token=self.pad_token,
                               add_bos=self.add_bos, name=self.name)

    # ----------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def _id(self, token):
        return None if token is None else self.tokenizer.token_to_id(token)

    @property
    def bos_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def pad_id(self) -> int:
        """The pad token, else EOS, else 0 (padded positions are masked out anyway)."""
        for token in (self.pad_token, self.eos_token):
            if token is not None:
                return self._id(token)
        return 0

    def render(self, question: str, template_kwargs: dict | None = None) -> str:
        """The chat template applied to ``[{'role': 'user', 'content': question}]`` with
        ``add_generation_prompt=True`` (as transformers' ``apply_chat_template(tokenize=False)``);
        the raw question when the model has no template."""
        if self._template is None:
            return question
        kwargs = dict(bos_token=self.bos_token or "", eos_token=self.eos_token or "",
                      pad_token=self.pad_token or "", add_generation_prompt=True)
        kwargs.update(template_kwargs or {})
        return self._template.render(messages=[{"role": "user", "content": question}], **kwargs)

    def encode_batch(self, texts: list[str], max_length: int | None = None,
                     truncate: str = "warn") -> tuple[list[list[int]], int]:
        """Token ids of rendered texts, and how many were truncated.

        BOS follows the module's BOS rule. Truncation (``len > max_length``) cuts the middle:
        the first ``max_length // 2`` and the last ``max_length - max_length // 2`` tokens are
        kept, so the prompt's start (template header, system prompt, question start) and its end
        (question end and the generation prompt, whose last token gives the 'last' features)
        both survive. ``truncate='warn'`` logs the count; ``'error'`` raises.
        """
        if truncate not in ("warn", "error"):
            raise ValueError(f"truncate must be 'warn' or 'error', got {truncate!r}")
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        bos = self.bos_id
        ids = []
        for text, enc in zip(texts, encodings):
            seq = list(enc.ids)
            if self.add_bos and not text.startswith(self.bos_token):
                seq = [bos] + seq
            ids.append(seq)
        if max_length is None:
            return ids, 0
        too_long = [i for i, s in enumerate(ids) if len(s) > max_length]
        if too_long:
            longest = max(len(ids[i]) for i in too_long)
            msg = (f"{len(too_long)} of {len(ids)} prompts are longer than max_length={max_length} "
                   f"tokens (longest {longest})")
            if truncate == "error":
                raise ValueError(f"{msg}; raise max_length, shorten the prompts, or pass "
                                 "truncate='warn' to cut their middle")
            logging.warning("%s; cutting their middle", msg)
            head = max_length // 2
            tail = max_length - head
            for i in too_long:
                ids[i] = ids[i][:head] + ids[i][-tail:]
        return ids, len(too_long)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def _byte_level_bpe(tokens: list[str], meta: dict):
    """Byte-level BPE from a ``gpt2`` GGUF vocabulary; returns (tokenizer, respelled tokens)."""
    alphabet = _byte_alphabet()
    chars = set(alphabet.values())
    # A vocabulary entry outside the byte alphabet (rare mislabels) is spelled through it.
    tokens = [t if set(t) <= chars else "".join(alphabet[b] for b in t.encode("utf-8")) for t in tokens]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or []]
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    pre = meta.get("tokenizer.ggml.pre", "default")
    split = families.pre_split(pre)
    if split is not None and split.regex is not None:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(split.regex), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif split is not None and split.individual_digits:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
    else:
        logging.warning("GGUF pre-tokenizer %r not known; using GPT-2's byte-level regex", pre)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok, tokens


def gemma_merges(tokens: list[str]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece vocabulary: every split of a token into two
    vocabulary pieces, ranked by the token's position (earlier first), then longer left piece."""
    vocab = {t: i for i, t in enumerate(tokens)}
    ranked = []
    for token, index in vocab.items():
        for cut in range(len(token) - 1, 0, -1):  # longer left piece first
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                ranked.append((index, len(token) - cut, left, right))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [(left, right) for _, _, left, right in ranked]


def _sentencepiece_bpe(tokens: list[str], meta: dict):
    """Gemma-style SentencePiece as BPE with byte fallback; returns (tokenizer, respelled tokens)."""
    # Whitespace-only tokens are stored with real spaces; the model spells spaces as U+2581.
    tokens = ["\u2581" * len(t) if t and not t.strip(" ") else t for t in tokens]
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[int(unk_id)] if unk_id is not None else None
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=gemma_merges(tokens),
                                                     unk_token=unk, fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse()])
    return tok, tokens
