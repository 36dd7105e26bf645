"""ImageNetT2IPipeline: built from a run folder, saved and reloaded offline, it gives the CLI sampler's images bit for
bit (tiny world: pixel space + MiniLM; paper layout: AutoencoderKL + T5, both tiny random-init)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imagenet_t2i.encode.autoencoder import make_autoencoder
from imagenet_t2i.encode.text import make_text_encoder
from imagenet_t2i.encode.tiny_encoders import save_tiny_autoencoder_kl, save_tiny_t5
from imagenet_t2i.io import write_json
from imagenet_t2i.models import build_model, save_pretrained
from imagenet_t2i.models.base import OBJECTIVE_FILE
from imagenet_t2i.models.diffusers_models import DIFFUSERS_CLASSES
from imagenet_t2i.sampling.pipeline import ImageNetT2IPipeline, pipeline_from_run
from imagenet_t2i.sampling.sample import sample_prompts, save_png
from imagenet_t2i.weights import resolved

PROMPTS = ["a red circle in the lower left", "a small blue square", "x"]
SAMPLE = {"steps": 3, "guidance": 5.0, "clamp": 1.0, "seed": 7, "samples_per_prompt": 2}
TINY_WORLD = {"encode": {"autoencoder": {"backend": "pixel"}, "text": {"backend": "minilm", "max_tokens": 64}},
              "sample": SAMPLE}
SMALL = {"dit_i": {"patch_size": 4, "hidden_size": 32, "depth": 2, "num_heads": 2},
         "cad_i": {"patch_size": 4, "data_dim": 32, "num_latents": 8, "latents_dim": 32, "num_blocks": 1,
                   "num_processing_layers": 1, "compute_heads": 2, "text_heads": 2, "coherence": True}}


def run_folder(folder: Path, arch: str, objective: str, in_channels: int, input_size: int, text_dim: int) -> Path:
    """A random-init model written as the train loop writes ``final/``: weights, config, objective."""
    torch.manual_seed(0)
    model = build_model(arch, in_channels=in_channels, input_size=input_size, text_dim=text_dim, **SMALL[arch])
    with torch.no_grad():  # off the zero-initialised output layers: images must depend on the text
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    save_pretrained(model, folder)
    write_json(folder / OBJECTIVE_FILE, {"objective": objective})
    return folder


def cli_images(run: Path, config: dict, out: Path) -> tuple[np.ndarray, list[bytes]]:
    """What ``imagenet-t2i sample`` writes: the CLI's backends, the empty caption's float16 encoding as uncond."""
    text_encoder = make_text_encoder(resolved(config, "text"), "cpu")
    uncond = torch.from_numpy(text_encoder.encode([""])[0].astype(np.float16)).float()  # shards stage + load_uncond
    paths = sample_prompts(run, make_autoencoder(resolved(config, "autoencoder"), "cpu"), text_encoder, uncond,
                           PROMPTS, SAMPLE, out, progress=False)
    from PIL import Image

    return np.stack([np.asarray(Image.open(p)) for p in paths]), [p.read_bytes() for p in paths]


def check_same_images(pipe: ImageNetT2IPipeline, want: np.ndarray, want_png: list[bytes], tmp: Path) -> None:
    got = pipe(PROMPTS, num_images_per_prompt=2, seed=7, output_type="uint8").images
    assert got.dtype == np.uint8 and got.shape == want.shape and np.array_equal(got, want)
    for i, img in enumerate(got):  # the same PNG bytes as the CLI's files
        save_png(img, tmp / f"{i}.png")
        assert (tmp / f"{i}.png").read_bytes() == want_png[i]
    pil = pipe(PROMPTS, num_images_per_prompt=2, generator=torch.Generator().manual_seed(7)).images
    assert np.array_equal(np.stack([np.asarray(im) for im in pil]), want)
    other = pipe(PROMPTS[:1], seed=8, output_type="uint8").images
    assert not np.array_equal(other[0], want[0])


@pytest.mark.parametrize(("arch", "objective"), [("dit_i", "eps"), ("cad_i", "flow")])
def test_tiny_world_pipeline_gives_the_cli_images(arch, objective, tmp_path):
    run = run_folder(tmp_path / "run", arch, objective, in_channels=3, input_size=16, text_dim=384)
    want, want_png = cli_images(run, TINY_WORLD, tmp_path / "cli")
    pipe = pipeline_from_run(run, TINY_WORLD, device="cpu")
    check_same_images(pipe, want, want_png, tmp_path / "png")

    pipe.save_pretrained(tmp_path / "pipe")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli", "pipe", "png", "run"]  # no temporary folder left
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["model"] == ["imagenet_t2i.models.diffusers_models", DIFFUSERS_CLASSES[arch].__name__]
    assert index["vae"] == [None, None] and index["text_encoder"] == ["transformers", "BertModel"]
    assert {k: index[k] for k in ("objective", "max_tokens", "num_inference_steps", "guidance_scale", "clamp")} == {
        "objective": objective, "max_tokens": 64, "num_inference_steps": 3, "guidance_scale": 5.0, "clamp": 1.0}
    loaded = ImageNetT2IPipeline.from_pretrained(tmp_path / "pipe")  # HF_HUB_OFFLINE=1 (conftest)
    assert loaded.vae is None and type(loaded.model) is type(pipe.model)
    check_same_images(loaded, want, want_png, tmp_path / "png")


def test_paper_layout_pipeline_gives_the_cli_images(tmp_path):
    save_tiny_autoencoder_kl(tmp_path / "vae")
    save_tiny_t5(tmp_path / "t5")
    config = {"encode": {"autoencoder": {"backend": "sd_vae", "path": str(tmp_path / "vae")},
                         "text": {"backend": "t5", "path": str(tmp_path / "t5"), "max_tokens": 16}},
              "sample": SAMPLE}
    run = run_folder(tmp_path / "run", "cad_i", "eps", in_channels=4, input_size=32, text_dim=32)
    want, want_png = cli_images(run, config, tmp_path / "cli")
    assert want.shape == (6, 256, 256, 3)
    pipe = pipeline_from_run(run, config, device="cpu")
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = ImageNetT2IPipeline.from_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["text_encoder"] == ["transformers", "T5EncoderModel"]
    check_same_images(loaded, want, want_png, tmp_path / "png")


def test_output_type_is_checked(tmp_path):
    run = run_folder(tmp_path / "run", "dit_i", "eps", in_channels=3, input_size=16, text_dim=384)
    with pytest.raises(ValueError, match="output_type"):
        pipeline_from_run(run, TINY_WORLD, device="cpu")("x", output_type="latent")
