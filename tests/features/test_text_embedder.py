"""TextEmbedder against hand computations on tiny Mistral, LLaMA and BERT models saved to disk.

The oracle never uses the embedder's windowing or batching: it slices the token ids by
hand, runs the *causal LM* (with its LM head, ``output_hidden_states=True``) on one window
at a time without padding, concatenates the last-layer token states and averages them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from niclip_ray.errors import InputError
from niclip_ray.features.text import TextEmbedder, coerce_text, split_windows
from niclip_ray.features.text_models import resolve_model

WORDS = [f"w{i}" for i in range(60)]


def save_word_tokenizer(path):
    """A word-level tokenizer that adds BOS (like LLaMA/Mistral) and no EOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    tok.save_pretrained(path)
    return tok


def tiny_causal_lm(kind: str, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    sizes = dict(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(seed)
    if kind == "mistral":
        return MistralForCausalLM(MistralConfig(sliding_window=None, **sizes)).eval()
    return LlamaForCausalLM(LlamaConfig(**sizes)).eval()


@pytest.fixture(scope="module", params=["mistral", "llama"])
def causal_dir(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    save_word_tokenizer(path)
    tiny_causal_lm(request.param).save_pretrained(path)
    return path


def oracle(lm, ids: list[int], max_length: int) -> np.ndarray:
    """Mean last hidden state over all tokens of hand-sliced windows, one window per call."""
    states = []
    for start in range(0, len(ids), max_length):
        window = torch.tensor([ids[start : start + max_length]])
        with torch.no_grad():
            states.append(lm(input_ids=window, output_hidden_states=True).hidden_states[-1][0])
    return torch.cat(states).mean(dim=0).double().numpy()


def words(n: int, offset: int = 0) -> str:
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(n))


def test_pooled_vectors_equal_window_by_window_hand_computation(causal_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = [words(11), words(2, 5), words(3, 9), words(7, 20), words(4, 40)]  # 12, 3, 4, 8, 5 tokens
    embedder = TextEmbedder(str(causal_dir), max_length=4, batch_size=3)
    result = embedder.embed(texts)

    lm = AutoModelForCausalLM.from_pretrained(causal_dir, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(causal_dir)
    assert result.errors == [""] * len(texts)
    assert result.vectors.shape == (5, 32) and result.vectors.dtype == np.float32
    for i, text in enumerate(texts):
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id and tok.bos_token_id not in ids[1:]  # BOS only in window 1
        assert result.n_tokens[i] == len(ids)
        np.testing.assert_allclose(result.vectors[i], oracle(lm, ids, 4), rtol=1e-4, atol=1e-5)


def test_one_window_equals_the_whole_text_at_once(causal_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = words(20, 3)
    lm = AutoModelForCausalLM.from_pretrained(causal_dir, local_files_only=True).eval()
    batch = AutoTokenizer.from_pretrained(causal_dir)(text, return_tensors="pt")
    with torch.no_grad():
        expected = lm(**batch, output_hidden_states=True).hidden_states[-1][0].mean(0).numpy()
    got = TextEmbedder(str(causal_dir), batch_size=2).embed([text, words(3)]).vectors[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    chunked = TextEmbedder(str(causal_dir), max_length=6).embed([text]).vectors[0]
    assert not np.allclose(chunked, expected, atol=1e-4)  # windows see less context: a real difference


def test_bfloat16_is_close_to_float32(causal_dir):
    texts = [words(9), words(30, 7)]
    fp32 = TextEmbedder(str(causal_dir), max_length=8, dtype="float32").embed(texts).vectors
    bf16_embedder = TextEmbedder(str(causal_dir), max_length=8, dtype="bfloat16")
    assert bf16_embedder.loaded.model.dtype == torch.bfloat16
    bf16 = bf16_embedder.embed(texts).vectors
    assert bf16.dtype == np.float32
    cos = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cos.min() > 0.999
    np.testing.assert_allclose(bf16, fp32, atol=0.05)


def test_bad_texts_get_errors_and_leave_other_rows_unchanged(causal_dir):
    embedder = TextEmbedder(str(causal_dir), max_length=4, batch_size=4, max_tokens=20)
    good = [words(6), words(9, 3)]
    texts = ["", "   \n\t", b"w1 \xff\xfe w2", "w1 \udcff w2", None, words(25), good[0], b"w1 w2", good[1]]
    result = embedder.embed(texts)
    assert result.errors[0] == "empty text"
    assert result.errors[1] == "whitespace-only text"
    assert "not valid UTF-8 (byte 0xff at offset 3)" in result.errors[2]
    assert "lone surrogate at character 3" in result.errors[3]
    assert result.errors[4] == "missing text"
    assert "too long: 26 tokens > max_tokens=20" in result.errors[5]
    assert result.errors[6:] == ["", "", ""]
    assert np.isnan(result.vectors[:6]).all() and (result.n_tokens[:6] == 0).all()
    alone = embedder.embed(good + ["w1 w2"]).vectors
    np.testing.assert_allclose(result.vectors[[6, 8, 7]], alone, rtol=1e-5, atol=1e-6)
    assert result.ok.tolist() == [False] * 6 + [True] * 3


def test_lora_adapter_is_merged_like_peft_applies_it(causal_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(causal_dir, local_files_only=True)
    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    peft_model.peft_config["default"].base_model_name_or_path = str(causal_dir)
    peft_model.save_pretrained(tmp_path / "adapter")

    texts = [words(10), words(3, 11)]
    embedder = TextEmbedder(str(tmp_path / "adapter"), max_length=4)
    assert embedder.loaded.spec.adapter and embedder.dim == 32
    assert not hasattr(embedder.loaded.model, "lm_head")  # backbone only
    got = embedder.embed(texts).vectors

    unmerged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(causal_dir, local_files_only=True), tmp_path / "adapter"
    ).eval()
    tok = AutoTokenizer.from_pretrained(causal_dir)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(got[i], oracle(unmerged, tok(text)["input_ids"], 4), rtol=1e-4, atol=1e-5)
    plain = TextEmbedder(str(causal_dir), max_length=4).embed(texts).vectors
    assert np.abs(got - plain).max() > 1e-3  # the adapter changes the vectors


def fake_hf_cache(cache, repo_id: str, source) -> None:
    """Lay out ``source``'s files as a Hugging Face cache snapshot of ``repo_id``."""
    import shutil

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copytree(source, repo / "snapshots" / ("0" * 40))


def test_braingpt_preset_loads_base_and_adapter_from_the_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from peft import LoraConfig, get_peft_model

    base_dir = tmp_path / "mistral"
    save_word_tokenizer(base_dir)
    lm = tiny_causal_lm("mistral", seed=3)
    lm.save_pretrained(base_dir)
    torch.manual_seed(2)
    peft_model = get_peft_model(lm, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.peft_config["default"].base_model_name_or_path = "/data/models/mistral"  # a path, as upstream
    peft_model.save_pretrained(tmp_path / "adapter")

    cache = tmp_path / "hub"
    fake_hf_cache(cache, "mistralai/Mistral-7B-v0.1", base_dir)
    fake_hf_cache(cache, "BrainGPT/BrainGPT-7B-v0.2", tmp_path / "adapter")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    spec = resolve_model("BrainGPT/BrainGPT-7B-v0.2", max_length=8)
    assert (spec.model_id, spec.base, spec.adapter) == (
        "braingpt-7b-v0.2", "mistralai/Mistral-7B-v0.1", "BrainGPT/BrainGPT-7B-v0.2"
    )  # fmt: skip
    via_preset = TextEmbedder(spec).embed([words(12)]).vectors
    via_paths = TextEmbedder(str(tmp_path / "adapter"), base_model=str(base_dir), max_length=8).embed([words(12)])
    np.testing.assert_allclose(via_preset, via_paths.vectors, rtol=1e-6, atol=1e-7)
    assert resolve_model("braingpt-7b-v0.2").max_length == 8192
    assert resolve_model("llama-2-7b-chat").max_length == 4096


@pytest.fixture(scope="module")
def tiny_bert_dir(tiny_bert_factory):
    return tiny_bert_factory(16)


def test_encoder_windows_match_hand_computation(tiny_bert_dir):
    from transformers import AutoTokenizer, BertModel

    text = "working memory load modulates dorsolateral prefrontal activity during the n-back task"
    result = TextEmbedder(str(tiny_bert_dir), max_length=5).embed([text, "flanker conflict"])
    bert = BertModel.from_pretrained(tiny_bert_dir).eval()
    ids = AutoTokenizer.from_pretrained(tiny_bert_dir)(text)["input_ids"]
    states = []
    for start in range(0, len(ids), 5):
        with torch.no_grad():
            states.append(bert(input_ids=torch.tensor([ids[start : start + 5]])).last_hidden_state[0])
    np.testing.assert_allclose(result.vectors[0], torch.cat(states).mean(0).numpy(), rtol=1e-4, atol=1e-5)
    assert result.n_tokens[0] == len(ids) > 10


def test_encoder_window_longer_than_its_positions_is_refused(tiny_bert_dir):
    with pytest.raises(InputError, match="exceeds the 16 positions"):
        TextEmbedder(str(tiny_bert_dir), max_length=32)


def test_bad_model_references_raise_clear_errors(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(InputError, match="not a preset"):
        resolve_model(str(tmp_path / "missing" / "model"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="is not a model directory"):
        resolve_model(str(tmp_path / "junk"))
    with pytest.raises(InputError, match="is a file but not a .gguf model"):
        resolve_model(str(tmp_path / "junk" / "notes.txt"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="is not a transformers model"):
        TextEmbedder(str(tmp_path / "broken"))
    with pytest.raises(InputError, match="is not in the Hugging Face cache"):
        TextEmbedder("some-org/some-model")
    with pytest.raises(InputError, match="base model 'mistralai/Mistral-7B-v0.1' is not in the Hugging Face cache"):
        TextEmbedder("braingpt-7b-v0.2")
    with pytest.raises(InputError, match="does not exist"):
        TextEmbedder("braingpt-7b-v0.2", base_model=str(tmp_path / "missing"))


def test_config_without_weights_is_not_a_model(causal_dir, tmp_path):
    import shutil

    shutil.copy(causal_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(InputError, match="cannot load model"):
        TextEmbedder(str(tmp_path))


def test_helpers():
    assert split_windows([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert split_windows([1, 2], 8) == [[1, 2]]
    assert coerce_text(b"caf\xc3\xa9") == "café"
    for missing in (None, float("nan"), pd.NA):
        with pytest.raises(ValueError, match="missing text"):
            coerce_text(missing)
    with pytest.raises(ValueError, match="must be a string"):
        coerce_text(3)


def test_checkpoint_missing_tensors_is_refused(causal_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(causal_dir / name, tmp_path / name)
    tensors = load_file(causal_dir / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if "layers.1." not in k}, tmp_path / "model.safetensors")
    with pytest.raises(InputError, match="lacks .* weight tensors .*layers.1"):
        TextEmbedder(str(tmp_path))


def test_gguf_files_and_directories_resolve_to_the_file(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "m.Q4.gguf").write_bytes(b"GGUF")
    spec = resolve_model(str(tmp_path / "one"))
    assert spec.base == str(tmp_path / "one" / "m.Q4.gguf") and spec.adapter is None
    assert resolve_model(str(tmp_path / "one" / "m.Q4.gguf")).base == spec.base
    (tmp_path / "one" / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(InputError, match="several .gguf files"):
        resolve_model(str(tmp_path / "one"))
    assert resolve_model("smollm2-135m").base.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_bad_settings_name_their_parameter():
    from niclip_ray.errors import ParameterError
    from niclip_ray.features.text_models import resolve_dtype

    for call, param in [
        (lambda: resolve_model("  "), "model"),
        (lambda: resolve_model("braingpt-7b-v0.2", max_length=0), "max_length"),
        (lambda: resolve_dtype("float8", "cpu"), "dtype"),
    ]:
        with pytest.raises(ParameterError) as caught:
            call()
        assert caught.value.param == param


def test_texts_are_counted_done_once_all_their_windows_are(causal_dir):
    embedder = TextEmbedder(str(causal_dir), max_length=4, batch_size=2, max_tokens=40)
    texts = [words(14), "", words(3), words(9, 2)]  # 4, 0 (error), 1 and 3 windows
    counts: list[int] = []
    embedder.embed(texts, on_done=counts.append)
    assert sum(counts) == len(texts)
    assert counts[0] == 1  # the empty text, before any forward pass
    # 8 windows in batches of 2, longest first: no text is done before its last window
    assert len([c for c in counts[1:] if c]) >= 2
