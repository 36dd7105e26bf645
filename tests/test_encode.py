"""Image reading/preprocessing, autoencoders and text encoders of the encode stage."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from imagenet_t2i.encode.autoencoder import PixelAutoencoder, make_autoencoder
from imagenet_t2i.encode.images import CorruptImageError, load_rgb, preprocess, to_tensor, to_uint8
from imagenet_t2i.encode.text import MiniLMEncoder, T5Encoder, make_text_encoder


# ---- images ---------------------------------------------------------------------------------
def test_load_rgb_converts_every_mode(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)

    Image.fromarray(rgb).save(tmp_path / "png_inside.JPEG", format="PNG")  # ImageNet's PNG-as-JPEG
    assert np.array_equal(load_rgb(tmp_path / "png_inside.JPEG"), rgb)

    Image.new("L", (20, 12), 77).save(tmp_path / "gray.JPEG", quality=100)
    gray = load_rgb(tmp_path / "gray.JPEG")
    assert gray.shape == (12, 20, 3) and np.abs(gray.astype(int) - 77).max() <= 1

    Image.new("CMYK", (20, 12), (0, 255, 255, 0)).save(tmp_path / "cmyk.JPEG", quality=100)  # pure red ink
    cmyk = load_rgb(tmp_path / "cmyk.JPEG")
    assert cmyk.shape == (12, 20, 3) and cmyk.dtype == np.uint8
    assert cmyk[..., 0].min() > 200 and cmyk[..., 1:].max() < 60

    rgba = np.dstack([rgb, np.full((12, 20), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(load_rgb(tmp_path / "rgba.png"), rgb)

    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    pal = load_rgb(tmp_path / "palette.png")
    assert pal.shape == (12, 20, 3)
    assert np.array_equal(pal, np.asarray(Image.open(tmp_path / "palette.png").convert("RGB")))


def test_load_rgb_reports_unreadable_files(tmp_path):
    big = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "full.JPEG", quality=95)
    data = (tmp_path / "full.JPEG").read_bytes()
    (tmp_path / "truncated.JPEG").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.JPEG").write_bytes(b"this is not an image at all" * 10)

    for name, reason in [("truncated.JPEG", "truncated"), ("garbage.JPEG", "not a recognised"),
                         ("missing.JPEG", "not found")]:
        with pytest.raises(CorruptImageError) as err:
            load_rgb(tmp_path / name)
        assert err.value.path == str(tmp_path / name) and reason in str(err.value)
        assert name in str(err.value)


def test_preprocess_resizes_shorter_side_and_center_crops():
    wide = np.zeros((100, 200, 3), np.uint8)
    wide[:, 50:150] = 255  # the central square is white, the sides black
    out = preprocess(wide, 50)
    assert out.shape == (50, 50, 3) and out.dtype == np.uint8
    assert out[:, 2:-2].min() == 255 and out.mean() > 240  # only the crop edges can be touched by bicubic ringing
    assert preprocess(np.zeros((200, 90, 3), np.uint8), 64).shape == (64, 64, 3)

    exact = np.random.default_rng(2).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert np.array_equal(preprocess(exact, 32), exact[:, 8:40])  # no resize when the short side fits


def test_to_tensor_and_back_is_exact():
    imgs = np.random.default_rng(3).integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    imgs[0, 0, 0] = [0, 255, 128]
    x = to_tensor(imgs)
    assert x.shape == (4, 3, 6, 5) and x.dtype == torch.float32
    assert x[0, 0, 0, 0] == -1.0 and x[0, 1, 0, 0] == 1.0 and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(to_uint8(x), imgs)
    assert to_uint8(torch.full((1, 3, 2, 2), 3.0)).max() == 255  # out of range values clip


# ---- autoencoders ---------------------------------------------------------------------------
def test_pixel_autoencoder_is_identity():
    ae = make_autoencoder({"backend": "pixel"})
    assert isinstance(ae, PixelAutoencoder) and (ae.latent_channels, ae.downsample, ae.scale_factor) == (3, 1, 1.0)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    mean, std = ae.encode(x)
    assert torch.equal(mean, x) and torch.count_nonzero(std) == 0
    assert torch.equal(ae.decode(mean), x)
    json.dumps(ae.describe())


def test_sd_vae_backend_with_a_tiny_random_vae(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                  layers_per_block=1, sample_size=16).save_pretrained(tmp_path / "vae")
    ae = make_autoencoder({"backend": "sd_vae", "path": str(tmp_path / "vae")}, device="cpu")
    assert (ae.latent_channels, ae.downsample, ae.scale_factor) == (4, 2, 0.18215)

    x = torch.rand(2, 3, 16, 16) * 2 - 1
    mean, std = ae.encode(x)
    assert mean.shape == std.shape == (2, 4, 8, 8) and mean.dtype == torch.float32
    assert (std > 0).all()
    posterior = ae.vae.encode(x).latent_dist
    assert torch.allclose(mean, posterior.mean) and torch.allclose(std, posterior.std)
    out = ae.decode(mean)
    assert out.shape == (2, 3, 16, 16) and out.min() >= -1 and out.max() <= 1
    assert json.loads(json.dumps(ae.describe()))["backend"] == "sd_vae"
    with pytest.raises(ValueError, match="unknown autoencoder backend"):
        make_autoencoder({"backend": "vqgan"})


# ---- text encoders --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    return make_text_encoder({"backend": "minilm", "max_tokens": 16}, device="cpu")


def test_minilm_token_states(minilm):
    texts = ["An image of a red circle", "", "word " * 40]
    embs = minilm.encode(texts)
    assert minilm.dim == 384
    expected = [len(ids) for ids in minilm.tokenizer(texts, truncation=True, max_length=16)["input_ids"]]
    assert [e.shape for e in embs] == [(n, 384) for n in expected]
    assert expected[1] == 2 and expected[2] == 16  # "" -> [CLS] [SEP]; long text truncated to max_tokens
    assert all(e.dtype == np.float16 for e in embs)

    # the stored states are the model's last hidden state, unaffected by the padding of the batch
    with torch.no_grad():
        ids = minilm.tokenizer([texts[0]], return_tensors="pt")
        ref = minilm.model(**ids).last_hidden_state[0].numpy()
    np.testing.assert_allclose(embs[0].astype(np.float32), ref, atol=2e-3)
    alone = minilm.encode([texts[0]])[0]
    np.testing.assert_allclose(alone.astype(np.float32), embs[0].astype(np.float32), atol=2e-3)
    assert not np.allclose(minilm.encode(["a blue square"])[0][1:3], embs[0][1:3], atol=0.05)
    assert json.loads(json.dumps(minilm.describe()))["max_tokens"] == 16


def test_t5_encoder_with_a_tiny_random_model(tmp_path, minilm):
    # tokenizer: the MiniLM (BERT WordPiece) tokenizer saved next to a tiny random T5 encoder
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    cfg = T5Config(vocab_size=minilm.tokenizer.vocab_size, d_model=32, d_kv=8, num_heads=4, num_layers=2,
                   d_ff=64, pad_token_id=minilm.tokenizer.pad_token_id)
    T5EncoderModel(cfg).save_pretrained(tmp_path / "t5")
    minilm.tokenizer.save_pretrained(tmp_path / "t5")

    enc = make_text_encoder({"backend": "t5", "path": str(tmp_path / "t5"), "max_tokens": 8}, device="cpu")
    assert isinstance(enc, T5Encoder) and enc.dim == 32 and enc.dtype == torch.float32
    texts = ["a small green triangle", "", "many words " * 10]
    embs = enc.encode(texts)
    expected = [len(i) for i in enc.tokenizer(texts, truncation=True, max_length=8)["input_ids"]]
    assert [e.shape[0] for e in embs] == expected
    assert embs[1].shape == (2, 32) and embs[2].shape == (8, 32)
    with torch.no_grad():
        ids = enc.tokenizer([texts[0]], return_tensors="pt")
        ref = enc.model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).last_hidden_state[0].numpy()
    np.testing.assert_allclose(embs[0].astype(np.float32), ref, atol=2e-3)
    with pytest.raises(ValueError, match="unknown text encoder backend"):
        make_text_encoder({"backend": "clip"})
