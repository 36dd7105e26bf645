"""Caption throughput of LLaVA-NeXT through HF ``generate`` as `LlavaNextCaptioner` runs it; the GPU-hours it implies.

Per batch size: the processor (anyres tiling, left padding), ``generate`` with a FIXED output length
(``min_new_tokens = max_new_tokens = --new-tokens``, default 200 = the paper's cap; a random-init model never
stops early, while real captions stop at <|eot_id|> before the cap, so the projection is an upper bound for
the paper's setting), and the decode; one untimed warm-up batch first. Images are random noise of
``--image-size`` pixels square (default 256: the caption stage shows the model its resize + centre-crop view).

``--size tiny``: the tests' tiny random-init model (imagenet_t2i.captions.tiny_llava), fp32 on a CPU.
``--size full``: random-init LLaVA-NeXT with llava-hf/llama3-llava-next-8b-hf's architecture (`full_config`),
built on the device in bf16 (about 16 GiB), with the real image processor settings; the tokenizer is the tiny
one (token ids do not change the compute; the image tokens, which dominate the prompt, are counted exactly).

    PYTHONPATH=src python benchmarks/caption_throughput.py --size tiny --device cpu
    PYTHONPATH=src python benchmarks/caption_throughput.py --size full --device cuda --batch-sizes 1,8,16,32
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image
from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                          LlavaNextImageProcessor, LlavaNextProcessor)

from imagenet_t2i.captions.llava import chat_prompt
from imagenet_t2i.captions.tiny_llava import CHAT_TEMPLATE, IMAGE, build_config, build_processor, build_tokenizer

SETS = {"real": 1_281_167, "cutmix": 1_281_167, "crop": 1_281_167, "val": 50_000}  # images to caption
FULL_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


def full_config(image_token_id: int) -> LlavaNextConfig:
    """llava-hf/llama3-llava-next-8b-hf: CLIP ViT-L/14-336 (24 layers, width 1024) + Llama-3-8B (32 layers,
    width 4096, 32 heads, 8 KV heads, MLP 14336, vocab 128320), anyres pinpoints, 576 tokens per 336-px tile."""
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=128320, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                       rope_theta=500000.0, rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=4, pad_token_id=6)
    return LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=image_token_id,
                           image_grid_pinpoints=FULL_PINPOINTS, vision_feature_layer=-2,
                           vision_feature_select_strategy="default", projector_hidden_act="gelu",
                           tie_word_embeddings=False, image_seq_length=576)


def build(size: str, device: str) -> tuple[LlavaNextForConditionalGeneration, LlavaNextProcessor]:
    """The random-init model on ``device`` (tiny: fp32, full: bf16) and its processor."""
    tokenizer = build_tokenizer()
    if size == "tiny":
        config, processor, dtype = build_config(tokenizer), build_processor(tokenizer), torch.float32
    else:
        config, dtype = full_config(tokenizer.convert_tokens_to_ids(IMAGE)), torch.bfloat16
        image_processor = LlavaNextImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                                  image_grid_pinpoints=FULL_PINPOINTS, do_pad=True)
        processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                                       vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                       chat_template=CHAT_TEMPLATE)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaNextForConditionalGeneration._from_config(config, dtype=dtype)
    return model.eval(), processor


@torch.inference_mode()
def run_batch(model, processor, prompt: str, images: list[Image.Image], new_tokens: int, device: str) -> int:
    """Caption one batch as the captioner does, exactly ``new_tokens`` new tokens an image; -> prompt length."""
    inputs = processor(images=images, text=[prompt] * len(images), padding=True, return_tensors="pt").to(device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)  # (B, tiles, 3, H, W)
    ids = model.generate(**inputs, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    assert ids.shape[1] == inputs["input_ids"].shape[1] + new_tokens, "generation stopped early"
    processor.batch_decode(ids, skip_special_tokens=True)
    return inputs["input_ids"].shape[1]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["tiny", "full"], default="tiny")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-sizes", default=None, help="comma list (default tiny 1,4,8; full 1,8,16,32)")
    p.add_argument("--new-tokens", type=int, default=200, help="fixed caption length in tokens (paper cap: 200)")
    p.add_argument("--images", type=int, default=None, help="timed images per batch size (default 16 tiny, 64 full)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the tests run)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in (args.batch_sizes or ("1,4,8" if args.size == "tiny" else "1,8,16,32")).split(",")]
    n_images = args.images or (16 if args.size == "tiny" else 64)
    t0 = time.perf_counter()
    model, processor = build(args.size, args.device)
    sync(args.device)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"{args.size} LLaVA-NeXT, {sum(t.numel() for t in model.parameters()) / 1e6:,.1f} M parameters, "
          f"{model.dtype}, on {args.device} ({name}); built in {time.perf_counter() - t0:.1f} s", flush=True)
    prompt = chat_prompt(processor, "Describe this image")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (args.image_size,) * 2 + (3,), dtype=np.uint8))
              for _ in range(max(n_images, max(batch_sizes)))]
    rows = []
    for bs in batch_sizes:
        try:
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats(args.device)
            prompt_len = run_batch(model, processor, prompt, images[:bs], args.new_tokens, args.device)  # warm-up
            sync(args.device)
            t = time.perf_counter()
            done = 0
            while done < n_images:
                run_batch(model, processor, prompt, images[done:done + bs], args.new_tokens, args.device)
                done += len(images[done:done + bs])
            sync(args.device)
            rate = done / (time.perf_counter() - t)
        except torch.OutOfMemoryError:
            print(f"batch {bs}: out of memory", flush=True)
            continue
        peak = f"{torch.cuda.max_memory_allocated(args.device) / 2**30:.1f}" if args.device.startswith("cuda") else "-"
        rows.append((bs, rate, prompt_len, peak))
        print(f"batch {bs}: {rate:.3f} img/s, {rate * args.new_tokens:.0f} new tokens/s, prompt {prompt_len} tokens, "
              f"peak memory {peak} GiB", flush=True)
    print(f"\n{args.size} on {name}, {args.new_tokens} new tokens an image (fixed), {args.image_size}-px images; "
          "projected hours for one device = images / rate")
    print(f"{'batch':>5} {'img/s':>9} {'prompt':>6} {'GiB':>5} " + " ".join(f"{k + '_h':>9}" for k in SETS))
    for bs, rate, prompt_len, peak in rows:
        print(f"{bs:>5} {rate:>9.3f} {prompt_len:>6} {peak:>5} " + " ".join(f"{n / rate / 3600:>9.1f}"
                                                                            for n in SETS.values()))


if __name__ == "__main__":
    main()
