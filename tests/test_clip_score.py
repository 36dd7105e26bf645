"""CLIPScore with a random-init tiny CLIPModel and an offline-built CLIP BPE tokenizer: values against
transformers' own pipeline, the per-pair clamp, 77-token truncation and its count, streaming totals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imagenet_t2i.evaluation.fid.clip_score import load_clip_scorer
from imagenet_t2i.evaluation.fid.metrics import fid_report_from_features, write_features
from imagenet_t2i.evaluation.fid.tiny_models import save_tiny_clip

# Seed 1's random tiny CLIP gives positive cosines on these pairs (seed 0's would all be clamped to 0).
SEED = 1
PROMPTS = ["a photo of a cat", "a " * 75, "a " * 76, "a dog running on the grass " * 20, "a red car", "two birds"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip"
    save_tiny_clip(path, seed=SEED)
    return path


def images(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 40, 56, 3), dtype=np.uint8)


def reference_scores(folder, imgs: np.ndarray, prompts: list[str]) -> torch.Tensor:
    """Per pair 100 cos through transformers' CLIPImageProcessor (PIL) and CLIPModel, prompts cut by hand to
    [bos] + first 75 tokens + [eos]."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    model, tok = CLIPModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    pixels = processor(images=[Image.fromarray(im) for im in imgs], return_tensors="pt")["pixel_values"]
    scores = []
    with torch.no_grad():
        img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)  # (N, D)
        for i, prompt in enumerate(prompts):
            ids = tok(prompt, verbose=False)["input_ids"]
            ids = ids if len(ids) <= 77 else ids[:76] + [tok.eos_token_id]
            txt = model.text_projection(model.text_model(input_ids=torch.tensor([ids])).pooler_output)  # (1, D)
            scores.append(100 * torch.nn.functional.cosine_similarity(img[i:i + 1], txt).squeeze())
    return torch.stack(scores)


def test_tokenizer_is_clip_format(folder):
    from transformers import AutoTokenizer, CLIPTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    assert isinstance(tok, CLIPTokenizer)
    assert tok.tokenize("a") == ["a</w>"] and tok.tokenize("A  Cat") == ["a</w>", "cat</w>"]
    assert tok.convert_ids_to_tokens([len(tok) - 2, len(tok) - 1]) == ["<|startoftext|>", "<|endoftext|>"]
    assert [len(tok(p, verbose=False)["input_ids"]) for p in PROMPTS[1:3]] == [77, 78]  # bos + words + eos


def test_clip_score_values_truncation_and_clamp(folder):
    scorer = load_clip_scorer(folder, sha256="cd" * 32)
    imgs = images(len(PROMPTS))
    with torch.no_grad():
        scores, truncated = scorer(torch.from_numpy(imgs).permute(0, 3, 1, 2), PROMPTS)
    assert truncated.tolist() == [False, False, True, True, False, False]
    expected = reference_scores(folder, imgs, PROMPTS)
    assert (expected > 0).all()  # so the values themselves are compared, not only the clamp
    torch.testing.assert_close(scores, expected, rtol=2e-3, atol=2e-2)
    # The same pairs with the text embedding negated: every cosine < 0, every score clamped to 0.
    with torch.no_grad():
        scorer.model.text_projection.weight.neg_()
        flipped, _ = scorer(torch.from_numpy(imgs).permute(0, 3, 1, 2), PROMPTS)
        scorer.model.text_projection.weight.neg_()
    assert torch.equal(flipped, torch.zeros(len(PROMPTS)))
    info = scorer.describe()
    assert info["max_tokens"] == 77 and info["weights_sha256"] == "cd" * 32 and "bicubic" in info["resize"]


def test_clip_score_of_chunked_samples(folder, tmp_path):
    """CLIPScore kept per pair by each sampling job (`write_features`) and averaged by the merge."""
    scorer = load_clip_scorer(folder)
    imgs = images(len(PROMPTS))
    with torch.no_grad():
        per_pair, _ = scorer(torch.from_numpy(imgs).permute(0, 3, 1, 2), PROMPTS)
    chunks = [tmp_path / "a.npz", tmp_path / "b.npz"]
    write_features([imgs[:1], *imgs[1:3]], [], chunks[0], prompts=iter(PROMPTS[:3]), clip_scorer=scorer)
    write_features([imgs[3:]], [], chunks[1], prompts=PROMPTS[3:], clip_scorer=scorer)
    result = fid_report_from_features(chunks, {}, batch_size=4)["clip_score"]  # sampled by two jobs, merged
    # the text batches differ (3 + 3 prompts vs 6, padded to their longest): equal to float32 rounding
    assert result["clip_score"] == pytest.approx(float(per_pair.double().mean()), rel=1e-5)
    assert result["num_pairs"] == 6 and result["num_truncated"] == 2 and result["network"] == scorer.describe()
    with pytest.raises(ValueError, match="fewer prompts"):
        write_features([imgs], [], tmp_path / "c.npz", prompts=PROMPTS[:5], clip_scorer=scorer)
    with pytest.raises(ValueError, match="more prompts"):
        write_features([imgs[:5]], [], tmp_path / "c.npz", prompts=PROMPTS, clip_scorer=scorer)
    assert not (tmp_path / "c.npz").exists()
