"""Image reading/preprocessing, autoencoders and text encoders of the encode stage."""
from __future__ import annotations

import io
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


def test_official_preprocessing_cuts_the_centre_square_then_resizes_bilinear():
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)  # a typical ImageNet size
    out = preprocess(photo, 64, "official")
    expected = np.asarray(Image.fromarray(photo[:, 62:437]).resize((64, 64), Image.Resampling.BILINEAR))
    assert np.array_equal(out, expected)
    assert not np.array_equal(out, preprocess(photo, 64))  # the bicubic resize-then-crop differs
    assert np.array_equal(preprocess(photo[:64, :80], 64, "official"), photo[:64, 8:72])  # no resize when it fits
    with pytest.raises(ValueError, match="source.resize"):
        preprocess(photo, 64, "lanczos")


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


# ---- random-init stand-ins of the paper encoders (imagenet_t2i.encode.tiny_encoders) -------------------
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Folders of the tiny SD-layout VAE and flan-t5-layout encoder, loaded as the paper loads the real ones."""
    from imagenet_t2i.encode.tiny_encoders import save_tiny_autoencoder_kl, save_tiny_t5

    root = tmp_path_factory.mktemp("weights")
    save_tiny_autoencoder_kl(root / "vae")
    save_tiny_t5(root / "t5")
    return root


def test_tiny_vae_folder_is_an_8x_sd_vae(tiny_weights, tmp_path):
    from imagenet_t2i.encode.autoencoder import SDVAE
    from imagenet_t2i.encode.tiny_encoders import save_tiny_autoencoder_kl

    ae = make_autoencoder({"backend": "sd_vae", "path": str(tiny_weights / "vae"), "dtype": "float32"}, device="cpu")
    assert isinstance(ae, SDVAE) and (ae.latent_channels, ae.downsample, ae.scale_factor) == (4, 8, 0.18215)
    assert len(ae.vae.config.block_out_channels) == 4 and ae.vae.dtype == torch.float32
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mean, std = ae.encode(x)
    assert mean.shape == std.shape == (2, 4, 32, 32) and mean.dtype == std.dtype == torch.float32
    assert (std > 0).all() and not torch.equal(mean[0], mean[1])
    with torch.no_grad():
        posterior = ae.vae.encode(x).latent_dist
    assert torch.equal(mean, posterior.mean) and torch.equal(std, posterior.std)  # the CPU path adds nothing
    out = ae.decode(mean)
    assert out.shape == (2, 3, 256, 256) and out.dtype == torch.float32 and out.min() >= -1 and out.max() <= 1

    save_tiny_autoencoder_kl(tmp_path / "again")  # same seed, same weights; another seed, others
    save_tiny_autoencoder_kl(tmp_path / "other", seed=1)
    again = make_autoencoder({"backend": "sd_vae", "path": str(tmp_path / "again")}, device="cpu")
    other = make_autoencoder({"backend": "sd_vae", "path": str(tmp_path / "other")}, device="cpu")
    assert torch.equal(again.encode(x)[0], mean) and not torch.allclose(other.encode(x)[0], mean)


def test_bf16_vae_on_cpu(tiny_weights):
    path = str(tiny_weights / "vae")
    fp32 = make_autoencoder({"backend": "sd_vae", "path": path, "dtype": "float32"}, device="cpu")
    bf16 = make_autoencoder({"backend": "sd_vae", "path": path, "dtype": "bfloat16"}, device="cpu")
    assert bf16.vae.dtype == torch.bfloat16 and bf16.describe()["dtype"] == "bfloat16"
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1
    (m32, s32), (m16, s16) = fp32.encode(x), bf16.encode(x)
    assert m16.shape == s16.shape == (2, 4, 32, 32) and m16.dtype == s16.dtype == torch.float32
    assert torch.isfinite(m16).all() and (s16 > 0).all()
    rel = (m16 - m32).norm() / m32.norm()
    assert 0 < rel < 0.05  # bf16 rounding: close to fp32, not identical
    out = bf16.decode(m16)
    assert out.shape == (2, 3, 256, 256) and out.dtype == torch.float32
    with pytest.raises(ValueError, match=r"encode\.autoencoder\.dtype.*float16"):
        make_autoencoder({"backend": "sd_vae", "path": path, "dtype": "float16"}, device="cpu")


def test_tiny_t5_folder_tokenizes_and_encodes_like_flan_t5(tiny_weights):
    from transformers import AutoTokenizer

    enc = make_text_encoder({"backend": "t5", "path": str(tiny_weights / "t5"), "max_tokens": 12}, device="cpu")
    assert isinstance(enc, T5Encoder) and enc.dim == 32 and enc.dtype == torch.float32
    cfg = enc.model.config
    assert (cfg.model_type, cfg.is_gated_act, cfg.dense_act_fn, cfg.d_model) == ("t5", True, "gelu_new", 32)
    tok = AutoTokenizer.from_pretrained(str(tiny_weights / "t5"))  # what T5Encoder loads, offline
    assert type(tok).__name__ == "T5Tokenizer" and len(tok) <= cfg.vocab_size
    assert [tok.convert_ids_to_tokens(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)

    texts = ["An image of a red dog on the grass.", "", "word " * 30, "zebra Ω"]
    ids = enc.token_ids(texts)
    assert ids[1] == [1]  # "" is exactly </s>, the unconditional embedding
    assert all(i[-1] == 1 for i in ids) and len(ids[2]) == 12  # </s> ends every text, truncated ones too
    assert tok.convert_ids_to_tokens(ids[0]) == ["▁An", "▁image", "▁of", "▁a", "▁red", "▁dog", "▁on", "▁the",
                                                 "▁grass", ".", "</s>"]
    assert 2 in ids[3]  # a character outside the vocabulary is <unk>
    embs = enc.encode(texts)
    assert [e.shape for e in embs] == [(n, 32) for n in enc.token_counts(texts)] == [(11, 32), (1, 32), (12, 32),
                                                                                      (len(ids[3]), 32)]
    assert all(e.dtype == np.float16 for e in embs)
    with torch.no_grad():
        ref = enc.model(input_ids=torch.tensor([ids[0]])).last_hidden_state[0].numpy()
    np.testing.assert_allclose(embs[0].astype(np.float32), ref, atol=2e-3)  # padding of the batch changes nothing
    with pytest.raises(ValueError, match=r"encode\.text\.dtype.*float16"):
        make_text_encoder({"backend": "t5", "path": str(tiny_weights / "t5"), "dtype": "float16"}, device="cpu")


def test_write_shards_with_the_tiny_vae_and_t5(tiny_weights, tmp_path):
    import webdataset as wds

    from imagenet_t2i.shards.writer import write_shards

    rng = np.random.default_rng(0)
    (tmp_path / "split" / "img").mkdir(parents=True)
    rows, captions = [], []
    for i, size in enumerate([(300, 280), (256, 256), (260, 400), (512, 300), (270, 270)]):
        img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / "split" / "img" / f"k{i}.png")
        rows.append({"key": f"k{i}", "path": f"img/k{i}.png"})
        captions.append({"key": f"k{i}", "caption": "" if i == 3 else f"A photo of a {['red', 'blue'][i % 2]} car {i}."})
    (tmp_path / "split" / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions))

    vae = make_autoencoder({"backend": "sd_vae", "path": str(tiny_weights / "vae"), "dtype": "float32"}, device="cpu")
    t5 = make_text_encoder({"backend": "t5", "path": str(tiny_weights / "t5"), "max_tokens": 256}, device="cpu")
    manifest = write_shards(tmp_path / "split", tmp_path / "captions.jsonl", tmp_path / "shards", vae, t5, 256,
                            shard_size=3, batch_size=2, progress=False, num_workers=1)
    assert manifest["latent_shape"] == [4, 32, 32] and manifest["text_dim"] == 32
    assert manifest["num_samples"] == 5 and len(manifest["shards"]) == 2 and manifest["uncond_tokens"] == 1
    assert manifest["autoencoder"]["backend"] == "sd_vae" and manifest["text_encoder"]["backend"] == "t5"
    urls = [str(tmp_path / "shards" / s["name"]) for s in manifest["shards"]]
    samples = {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)}
    by_key = {c["key"]: c["caption"] for c in captions}
    for key, s in samples.items():
        mean, emb = np.load(io.BytesIO(s["mean.npy"])), np.load(io.BytesIO(s["emb.npy"]))
        assert mean.shape == np.load(io.BytesIO(s["std.npy"])).shape == (4, 32, 32) and mean.dtype == np.float16
        assert emb.shape == (t5.token_counts([by_key[key]])[0], 32) and emb.dtype == np.float16
    assert np.load(io.BytesIO(samples["k3"]["emb.npy"])).shape == (1, 32)  # the empty caption is </s> alone
