"""Prompt-embedding cache: the real MiniLM encoder against its cached embeddings, and sampling through the CLI."""
import json
import struct
import tracemalloc

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load, save

from imagenet_t2i.cli import main
from imagenet_t2i.config import load_config
from imagenet_t2i.encode.text import TextEncoder, make_text_encoder
from imagenet_t2i.encode.text_cache import TextEmbeddingCache, read_texts, text_key, write_text_cache
from imagenet_t2i.io import read_json, write_jsonl
from imagenet_t2i.models import build_model, save_pretrained
from imagenet_t2i.workflow import embedding_inputs, embeddings_path

from .conftest import REPO, TINY_MODELS

PROMPTS = ["a photo of a red circle", "", "a blue square in the lower right of the image", "word " * 40]


@pytest.fixture(scope="module")
def minilm():
    return make_text_encoder({"backend": "minilm", "max_tokens": 16}, device="cpu")


def test_cache_returns_what_the_encoder_returns(minilm, tmp_path):
    path = tmp_path / "emb.safetensors"
    assert write_text_cache(minilm, PROMPTS, path, batch_size=3, progress=False) == len(PROMPTS)
    cache = TextEmbeddingCache(path, expect={"backend": "minilm", "max_tokens": 16, "batch_size": 8})
    assert isinstance(cache, TextEncoder)
    assert (cache.dim, cache.max_tokens) == (384, 16)
    assert cache.describe() == {**minilm.describe(), "cache": str(path)}
    asked = [PROMPTS[2], PROMPTS[0], PROMPTS[2], PROMPTS[3], PROMPTS[1]]
    direct, cached = minilm.encode(asked), cache.encode(asked)
    assert [c.shape for c in cached] == [d.shape for d in direct]
    assert all(c.dtype == np.float16 for c in cached)
    for c, d in zip(cached, direct):
        np.testing.assert_allclose(c.astype(np.float32), d.astype(np.float32), atol=2e-3)


def test_duplicates_are_stored_once(minilm, tmp_path):
    path = tmp_path / "emb.safetensors"
    assert write_text_cache(minilm, ["a", "b", "a", "a"], path, progress=False) == 2
    with safe_open(str(path), framework="numpy") as f:
        assert sorted(f.keys()) == sorted([text_key("a"), text_key("b")])
        assert sorted(json.loads(f.metadata()["texts"]).values()) == ["a", "b"]


def test_missing_text_and_other_encoder_are_named(minilm, tmp_path):
    path = tmp_path / "emb.safetensors"
    write_text_cache(minilm, PROMPTS[:1], path, progress=False)
    cache = TextEmbeddingCache(path)
    with pytest.raises(LookupError, match=r"emb\.safetensors holds no embedding of 'a green ring'.*prompt_embeddings"):
        cache.encode([PROMPTS[0], "a green ring"])
    with pytest.raises(ValueError, match=r"max_tokens: expected 256, cache 16.*rebuild"):
        TextEmbeddingCache(path, expect={"backend": "minilm", "max_tokens": 256})
    with pytest.raises(FileNotFoundError, match="imagenet-t2i embed"):
        TextEmbeddingCache(tmp_path / "absent.safetensors")


def test_failed_write_leaves_the_old_file(minilm, tmp_path):
    path = tmp_path / "emb.safetensors"
    write_text_cache(minilm, PROMPTS[:2], path, progress=False)
    before = path.read_bytes()
    with pytest.raises((TypeError, ValueError)):
        write_text_cache(minilm, ["ok", None], path, progress=False)  # the tokenizer rejects None
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_read_texts(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": "x", "tag": "t"}, {"prompt": "y"}])
    write_jsonl(tmp_path / "c.jsonl", [{"key": str(i), "caption": f"c{i}"} for i in range(5)])
    write_jsonl(tmp_path / "bad.jsonl", [{"text": "z"}])
    assert read_texts(tmp_path / "p.jsonl", captions_limit=1) == ["x", "y"]
    assert read_texts(tmp_path / "c.jsonl", captions_limit=3) == ["c0", "c1", "c2"]
    with pytest.raises(ValueError, match=r"bad\.jsonl.*'prompt'"):
        read_texts(tmp_path / "bad.jsonl")


def _images(folder) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_sample_cli_gives_the_same_images_with_the_cache(minilm, tmp_path):
    """`imagenet-t2i sample` of a random tiny DiT-I, text encoder vs `imagenet-t2i embed` cache, same seed."""
    over = {"sample": {"steps": 3, "samples_per_prompt": 2},  # grid_prompts hold PROMPTS[0]
            "encode": {"text": {"backend": "minilm", "max_tokens": 16}}, "eval": {"fd": {"num_samples": 2}}}
    (tmp_path / "over.yaml").write_text(yaml.safe_dump(over))
    config = [str(REPO / "config" / "config.yaml"), str(tmp_path / "over.yaml")]
    torch.manual_seed(0)
    model = build_model(**TINY_MODELS["dit_i"], in_channels=3, input_size=32, text_dim=384)
    with torch.no_grad():
        for p in model.parameters():  # zero-initialised output layers would ignore the text
            p.normal_(0.0, 0.2)
    save_pretrained(model, tmp_path / "model")
    (tmp_path / "uncond").mkdir()
    np.save(tmp_path / "uncond" / "uncond.npy", minilm.encode([""])[0])
    (tmp_path / "prompts.txt").write_text(f"{PROMPTS[2]}\n\n {PROMPTS[0]} \n")
    write_jsonl(tmp_path / "captions.jsonl", [{"key": "k0", "caption": PROMPTS[2]}, {"key": "k1", "caption": "x"}])
    emb = tmp_path / "emb.safetensors"
    assert main(["embed", "--config", *config, "--texts-from", str(tmp_path / "captions.jsonl"),
                 "--captions-limit", "1", "--out", str(emb)]) == 0
    assert read_json(f"{emb}.prov.json")["inputs"][str(tmp_path / "captions.jsonl")]["sha256"]

    common = ["sample", "--config", *config, "--model", str(tmp_path / "model"), "--uncond", str(tmp_path / "uncond"),
              "--prompts", str(tmp_path / "prompts.txt")]
    assert main([*common, "--out", str(tmp_path / "direct")]) == 0
    assert main([*common, "--embeddings", str(emb), "--out", str(tmp_path / "cached")]) == 0
    direct, cached = _images(tmp_path / "direct"), _images(tmp_path / "cached")
    assert direct.shape == (4, 32, 32, 3)
    assert np.abs(direct.astype(int) - cached.astype(int)).max() <= 1  # fp16 rounding of the embeddings at most
    assert not np.array_equal(direct[0], direct[2])  # the prompts matter, so the comparison means something
    assert read_json(tmp_path / "cached" / "provenance.json")["inputs"]["embeddings"]["path"] == str(emb)
    assert "embeddings" not in read_json(tmp_path / "direct" / "provenance.json")["inputs"]

    (tmp_path / "beyond.txt").write_text("x\n")  # the caption beyond --captions-limit
    with pytest.raises(LookupError, match="holds no embedding of 'x'"):
        main([*common[:-1], str(tmp_path / "beyond.txt"), "--embeddings", str(emb), "--out", str(tmp_path / "x")])


def test_workflow_keeps_one_cache_per_use():
    config = load_config(str(REPO / "config" / "config.yaml"))
    assert embedding_inputs(config, "grid") == []
    assert embedding_inputs(config, "dpg") == ["results/tiny/eval/dpg/prompts.jsonl"]
    assert embedding_inputs(config, "val_ta") == ["results/tiny/captions/val_ta.jsonl"]
    assert embeddings_path(config, "geneval") == "results/tiny/eval/embeddings/geneval.safetensors"
    with pytest.raises(ValueError, match="val_xx"):
        embedding_inputs(config, "val_xx")


# ---- streaming writer ---------------------------------------------------------------------------------
def _in_memory_cache(encoder, texts: list[str]) -> bytes:
    """The cache as `write_text_cache` wrote it before it streamed: every embedding in memory, then one save."""
    unique = list(dict.fromkeys(texts))
    tensors = {text_key(t): np.ascontiguousarray(e, dtype=np.float16) for t, e in zip(unique, encoder.encode(unique))}
    return save(tensors, metadata={"encoder": json.dumps(encoder.describe(), sort_keys=True),
                                   "texts": json.dumps({text_key(t): t for t in unique})})


def _split(blob: bytes) -> tuple[dict, bytes]:
    """A safetensors file -> (its parsed header, its data bytes)."""
    n = struct.unpack("<Q", blob[:8])[0]
    assert n % 8 == 0
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    from imagenet_t2i.encode.tiny_encoders import save_tiny_t5

    path = tmp_path_factory.mktemp("t5") / "t5"
    save_tiny_t5(path)
    return make_text_encoder({"backend": "t5", "path": str(path), "max_tokens": 24, "batch_size": 2}, device="cpu")


@pytest.mark.parametrize("name", ["minilm", "tiny_t5"])
def test_streamed_file_equals_the_in_memory_one(name, request, tmp_path):
    encoder = request.getfixturevalue(name)
    texts = PROMPTS + ["a", PROMPTS[2], "", "A photo of a dog sitting on the grass, é ñ \"quoted\"\n", "a"]
    path = tmp_path / "emb.safetensors"
    assert write_text_cache(encoder, texts, path, batch_size=3, progress=False) == len(set(texts))
    head, data = _split(path.read_bytes())
    with safe_open(str(path), framework="numpy") as f:
        stored, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    assert sorted(stored) == sorted(text_key(t) for t in set(texts))
    assert _split(save(stored, metadata=metadata)) == (head, data)  # the layout and data bytes safetensors writes

    old = _in_memory_cache(encoder, texts)
    assert _split(old)[0] == head  # the old writer's names, shapes, offsets and metadata (key order aside)
    for key, emb in load(old).items():  # its values up to the float noise of other batch paddings
        np.testing.assert_allclose(stored[key].astype(np.float32), emb.astype(np.float32), atol=2e-3)
    cache = TextEmbeddingCache(path)
    direct = encoder.encode(texts)
    for t, c, d in zip(texts, cache.encode(texts), direct):
        assert c.dtype == np.float16 and c.shape == d.shape, t
        np.testing.assert_allclose(c.astype(np.float32), d.astype(np.float32), atol=2e-3)
    assert cache.token_counts(texts) == encoder.token_counts(texts) == [len(d) for d in direct]
    assert cache.token_counts([""]) == [1 if name == "tiny_t5" else 2]  # </s>; [CLS] [SEP]
    with pytest.raises(LookupError, match="holds no embedding of 'absent'"):
        cache.token_counts(["absent"])

    assert write_text_cache(encoder, [], tmp_path / "none.safetensors", progress=False) == 0
    assert _split((tmp_path / "none.safetensors").read_bytes())[1] == b""
    assert TextEmbeddingCache(tmp_path / "none.safetensors").encode([]) == []


def test_memory_stays_one_batch(minilm, tmp_path):
    """Peak traced memory (numpy and Python) grows with the number of texts by far less than their embeddings."""
    def peak(write, n: int) -> int:
        texts = [f"caption number {i} of a red circle and a blue square in the image" for i in range(n)]
        tracemalloc.start()
        try:
            write(texts)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = 16, 112
    emb_bytes = (large - small) * 16 * 384 * 2  # every text is truncated to 16 tokens of width 384, float16

    def streamed(texts):
        write_text_cache(minilm, texts, tmp_path / "s.safetensors", batch_size=16, progress=False)

    def in_memory(texts):
        (tmp_path / "m.safetensors").write_bytes(_in_memory_cache(minilm, texts))

    assert peak(in_memory, large) - peak(in_memory, small) > emb_bytes  # the measure sees embeddings held
    assert peak(streamed, large) - peak(streamed, small) < emb_bytes / 4
