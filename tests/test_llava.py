"""LLaVA-NeXT captioner end to end on a tiny random-init LLaVA-NeXT built offline; the vLLM wrapper's parity."""
from __future__ import annotations

import importlib.util
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, GenerationConfig, LlavaNextForConditionalGeneration

from imagenet_t2i.captions import clean_vlm_caption
from imagenet_t2i.captions.fast_engine import VLLMCaptioner, sampling_kwargs
from imagenet_t2i.captions.llava import LlavaNextCaptioner
from imagenet_t2i.captions.tiny_llava import save_tiny_llava_next
from imagenet_t2i.io import sha256_file

NEW = 12  # new tokens a caption in these tests
PROMPT_TEXT = ("<|start_header_id|>user<|end_header_id|>\n\n<image>\nDescribe this image<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n")
SIZES = [(32, 32), (48, 80), (90, 30), (64, 64), (21, 50)]  # (H, W): several anyres grids, so padding happens


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("llava") / "tiny_llava_next"
    save_tiny_llava_next(path, seed=0)
    return path


@pytest.fixture(scope="module")
def captioner(tiny):
    return LlavaNextCaptioner(str(tiny), max_new_tokens=NEW, batch_size=3)


def images(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


def test_tiny_folder_loads_offline_with_the_real_classes_and_is_seeded(tiny, tmp_path):
    proc = AutoProcessor.from_pretrained(tiny)
    model = LlavaNextForConditionalGeneration.from_pretrained(tiny)
    assert type(proc).__name__ == "LlavaNextProcessor"
    assert type(proc.image_processor).__name__.startswith("LlavaNextImageProcessor")  # PIL twin without torchvision
    assert json.loads((tiny / "processor_config.json").read_text())["image_processor"]["image_processor_type"] == \
        "LlavaNextImageProcessor"
    tok = proc.tokenizer
    for t in ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<image>", "<pad>"):
        assert tok.added_tokens_decoder[tok.convert_tokens_to_ids(t)].special, t  # skipped when decoding
    assert tok("a dog").input_ids[0] == tok.bos_token_id  # BOS from the tokenizer, as Llama-3's
    conv = [{"role": "user", "content": [{"type": "text", "text": "Describe this image"}, {"type": "image"}]}]
    assert proc.apply_chat_template(conv, add_generation_prompt=True) == PROMPT_TEXT
    gen = model.generation_config
    assert not gen.do_sample and (gen.num_beams or 1) == 1  # unset: generate's defaults, greedy
    assert gen.eos_token_id == tok.convert_tokens_to_ids("<|eot_id|>")
    assert model.config.image_token_index == tok.convert_tokens_to_ids("<image>")
    save_tiny_llava_next(tmp_path / "again", seed=0)
    save_tiny_llava_next(tmp_path / "other", seed=1)
    for name in ("tokenizer.json", "model.safetensors", "config.json", "generation_config.json"):
        assert sha256_file(tmp_path / "again" / name) == sha256_file(tiny / name), name
    assert sha256_file(tmp_path / "other" / "model.safetensors") != sha256_file(tiny / "model.safetensors")


def test_captions_end_to_end_with_grayscale_cmyk_and_mixed_sizes(captioner):
    imgs = images()
    gray = imgs[1].mean(axis=2).astype(np.uint8)  # (H, W)
    cmyk = Image.fromarray(imgs[2]).convert("CMYK")
    batch = [*imgs, gray, cmyk]
    raws = captioner.raw_generations(batch)
    caps = captioner.caption_images(batch)
    assert len(raws) == len(caps) == len(batch)
    for raw, cap in zip(raws, caps):
        assert raw.startswith("user\n\n\nDescribe this imageassistant\n\n"), raw  # full sequence, special tokens gone
        assert cap == clean_vlm_caption(raw) and (cap == "" or cap.endswith(".")) and "\n" not in cap
    assert len(set(caps)) > 1  # the image changes the caption
    same = captioner.caption_images([np.stack([gray] * 3, axis=2), np.asarray(cmyk.convert("RGB"))])
    assert same == caps[-2:]  # grayscale and CMYK go through RGB as the paper's script's convert("RGB")
    with pytest.raises(ValueError, match="PIL"):
        captioner.caption_images([np.zeros((8, 8, 4), np.uint8)])


def test_captions_do_not_depend_on_the_batch(tiny, captioner):
    imgs = images(seed=1)[1:4]
    lengths = {len(captioner.processor(images=[im], text=[captioner.prompt_text]).input_ids[0]) for im in imgs}
    assert len(lengths) == 3  # three prompt lengths: batch of 3 is left-padded
    one = LlavaNextCaptioner(str(tiny), max_new_tokens=NEW, batch_size=1)
    assert one.raw_generations(imgs) == captioner.raw_generations(imgs)  # fp32 CPU: equal, not only close
    assert captioner.caption_images(imgs[::-1]) == captioner.caption_images(imgs)[::-1]


def test_describe_records_prompt_decoding_and_precision(tiny, captioner):
    d = json.loads(json.dumps(captioner.describe()))
    assert d["backend"] == "llava" and d["model_path"] == str(tiny) and d["prompt"] == "Describe this image"
    assert d["prompt_text"] == PROMPT_TEXT == captioner.prompt_text
    assert (d["max_new_tokens"], d["batch_size"], d["dtype"], d["device"]) == (NEW, 3, "float32", "cpu")
    assert d["generation_config"]["eos_token_id"] == captioner.processor.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert not d["generation_config"].get("do_sample", False)
    assert d["transformers_version"] and d["image_processor"].startswith("LlavaNextImageProcessor")


def test_a_generation_without_text_gives_an_empty_caption(tiny):
    mute = LlavaNextCaptioner(str(tiny), max_new_tokens=4, batch_size=2)
    with torch.no_grad():
        mute.model.lm_head.weight.zero_()  # all logits 0: greedy picks token 0, <|begin_of_text|> (special)
    raws = mute.raw_generations(images()[:2])
    assert raws == ["user\n\n\nDescribe this imageassistant\n\n"] * 2
    assert mute.caption_images(images()[:2]) == ["", ""]  # not ".": the caption stage can tell


def test_sampling_generation_configs_are_refused(tiny, tmp_path):
    folder = tmp_path / "sampling"
    shutil.copytree(tiny, folder)
    GenerationConfig(do_sample=True, temperature=0.6, eos_token_id=4).save_pretrained(folder)
    with pytest.raises(ValueError, match="greedy decoding only"):
        LlavaNextCaptioner(str(folder))


def test_sampling_kwargs_follow_the_generation_config():
    assert sampling_kwargs(GenerationConfig(bos_token_id=0, eos_token_id=4), 200) == {
        "temperature": 0.0, "repetition_penalty": 1.0, "max_tokens": 200, "min_tokens": 0,
        "stop_token_ids": [4], "skip_special_tokens": True}
    kw = sampling_kwargs(GenerationConfig(eos_token_id=[1, 4], repetition_penalty=1.1, min_new_tokens=5), 16)
    assert (kw["stop_token_ids"], kw["repetition_penalty"], kw["min_tokens"], kw["max_tokens"]) == ([1, 4], 1.1, 5, 16)
    assert sampling_kwargs(GenerationConfig(), 8)["stop_token_ids"] == []
    for bad in (dict(do_sample=True), dict(num_beams=2), dict(no_repeat_ngram_size=3)):
        with pytest.raises(ValueError):
            sampling_kwargs(GenerationConfig(**bad), 8)


class HFStandInEngine:
    """vLLM's ``LLM.generate(requests, sampling_params)`` shape, run by HF greedy generation of the tiny model,
    one request at a time (no padding): returns request outputs with the prompt's and the new token ids."""

    def __init__(self, path):
        self.processor = AutoProcessor.from_pretrained(path)
        self.model = LlavaNextForConditionalGeneration.from_pretrained(path).eval()

    @torch.inference_mode()
    def generate(self, requests, params, use_tqdm=True):
        assert params.temperature == 0.0 and params.skip_special_tokens
        out = []
        for req in requests:
            inputs = self.processor(images=[req["multi_modal_data"]["image"]], text=[req["prompt"]],
                                    return_tensors="pt")
            ids = self.model.generate(**inputs, do_sample=False, max_new_tokens=params.max_tokens,
                                      min_new_tokens=params.min_tokens, eos_token_id=params.stop_token_ids,
                                      repetition_penalty=params.repetition_penalty)[0]
            prompt, new = ids[: inputs.input_ids.shape[1]].tolist(), ids[inputs.input_ids.shape[1]:].tolist()
            text = self.processor.tokenizer.decode(new, skip_special_tokens=True)
            out.append(SimpleNamespace(prompt_token_ids=prompt, outputs=[SimpleNamespace(text=text, token_ids=new)]))
        return out


def test_vllm_wrapper_matches_the_hf_captioner(tiny, captioner):
    fast = VLLMCaptioner(str(tiny), max_new_tokens=NEW, batch_size=2, engine=HFStandInEngine(tiny),
                         sampling_params=SimpleNamespace)
    assert fast.prompt_text == captioner.prompt_text  # byte-identical prompt
    imgs = [*images(seed=2), Image.fromarray(images(seed=3)[0]).convert("L")]
    assert fast.raw_generations(imgs) == captioner.raw_generations(imgs)
    assert fast.caption_images(imgs) == captioner.caption_images(imgs)
    d = json.loads(json.dumps(fast.describe()))
    assert d["backend"] == "vllm" and d["sampling_params"]["max_tokens"] == NEW and d["engine"] == "HFStandInEngine"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_wrapper_without_vllm_names_its_environment(tiny):
    fast = VLLMCaptioner(str(tiny), max_new_tokens=NEW)
    with pytest.raises(RuntimeError, match="envs/vllm.yaml"):
        fast.caption_images(images()[:1])


def test_the_vllm_engine_gets_whole_request_batches_and_its_environment(tiny):
    """The engine schedules requests itself (continuous batching): it gets captions.vllm_requests images a call, not
    the transformers backend's batch_size; the caption jobs run in envs/vllm.yaml under --sdm conda."""
    from imagenet_t2i.captions.records import images_per_call, make_vlm
    from imagenet_t2i.config import load_config
    from imagenet_t2i.workflow import caption_env

    from .conftest import REPO

    config = load_config(REPO / "config" / "paper.yaml")
    assert (images_per_call(config), caption_env(config)) == (64, None)  # llava: 4 generate batches of 16
    config["captions"].update(backend="vllm", path=str(tiny))
    config["captions"].pop("weights")
    vlm = make_vlm(config, "vllm")
    assert vlm.batch_size == images_per_call(config) == config["captions"]["vllm_requests"] == 1024
    assert caption_env(config) == "../../envs/vllm.yaml"
    assert (REPO / "workflow" / "rules" / caption_env(config)).resolve() == REPO / "envs" / "vllm.yaml"
    assert (REPO / "envs" / "vllm.post-deploy.sh").is_file()  # installs this package into that environment


def test_full_view_shows_the_vlm_the_original_images(captioner, tmp_path, monkeypatch):
    """captions.view: full (paper.yaml, as the official script): the processor gets the fake ImageNet's JPEGs at
    their own sizes (anyres picks its grid from them); crop: the resized centre crop the models train on."""
    from imagenet_t2i.captions.records import ImageRecords
    from imagenet_t2i.encode.images import CorruptImageError, load_rgb
    from imagenet_t2i.io import read_jsonl
    from imagenet_t2i.source.fake_imagenet import write_fake_imagenet
    from imagenet_t2i.source.imagenet import build_index

    fake = write_fake_imagenet(tmp_path / "imagenet", classes=2, train_per_class=3, val_per_class=1, seed=0)
    build_index(fake["root"], "train", fake["synset_mapping"], tmp_path / "train", workers=1)
    rows = read_jsonl(tmp_path / "train" / "index.jsonl")
    originals = []
    for row in rows:
        try:
            originals.append(load_rgb(row["path"]).shape[:2])  # (H, W); the truncated odd file is reported instead
        except CorruptImageError:
            pass
    seen = []

    class Spy:  # the real processor, recording the image sizes it was handed
        def __init__(self, processor) -> None:  # noqa: ANN001
            self.processor = processor

        def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
            out = self.processor(*args, **kwargs)
            seen.extend(tuple(int(v) for v in size) for size in out["image_sizes"])
            return out

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(self.processor, name)

    monkeypatch.setattr(captioner, "processor", Spy(captioner.processor))
    full = ImageRecords(captioner, tmp_path / "train", 32, view="full")
    captions = full.caption(rows)
    assert sum(c is not None for c in captions) == len(originals) == len(rows) - 1 and len(full.failures) == 1
    assert seen == originals and len(set(seen)) > 1  # the JPEGs' own, varied sizes (60-120 px a side)
    assert full.describe()["view"] == "the stored image, whole"
    seen.clear()
    ImageRecords(captioner, tmp_path / "train", 32, view="crop").caption(rows)
    assert seen == [(32, 32)] * len(originals)
