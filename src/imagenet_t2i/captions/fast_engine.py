"""Optional vLLM backend for the LLaVA-NeXT captions: same prompt, decoding and post-processing as the HF path.

The prompt text comes from the HF processor's chat template (byte-identical to :class:`LlavaNextCaptioner`'s),
decoding settings from the model's generation config (:func:`sampling_kwargs`), and each caption is cleaned
from the prompt's and the generation's token ids decoded together by the HF tokenizer, i.e. from the very
text the HF path decodes. Its speed is UNMEASURED: vLLM cannot be installed on the machines this was written
on (environment: ``envs/vllm.yaml``); parity is tested against a stand-in engine only, and vLLM's bf16 kernels
may make long greedy generations drift from HF's after a near-tie.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import transformers
from transformers import AutoProcessor, GenerationConfig

from imagenet_t2i.captions.llava import ImageInput, chat_prompt, check_greedy, to_rgb_image
from imagenet_t2i.captions.vlm import clean_vlm_caption


def sampling_kwargs(config: GenerationConfig, max_new_tokens: int) -> dict:
    """``vllm.SamplingParams`` keyword arguments that decode as HF ``generate`` does with ``config``:
    greedy (temperature 0), the config's repetition penalty, stop at its EOS ids, ``max_new_tokens`` at most
    (and its ``min_new_tokens`` at least)."""
    check_greedy(config)
    if config.no_repeat_ngram_size:
        raise ValueError(f"no_repeat_ngram_size={config.no_repeat_ngram_size} has no vLLM equivalent")
    eos = config.eos_token_id
    return {"temperature": 0.0, "repetition_penalty": float(config.repetition_penalty or 1.0),
            "max_tokens": max_new_tokens, "min_tokens": config.min_new_tokens or 0,
            "stop_token_ids": [] if eos is None else [eos] if isinstance(eos, int) else list(eos),
            "skip_special_tokens": True}


class VLLMCaptioner:
    """LLaVA-NeXT captions through a vLLM engine (``generate(requests, sampling_params)``); speed unmeasured.

    ``engine`` defaults to ``vllm.LLM(model=model_path, dtype="bfloat16", ...)``, built on first use;
    ``sampling_params`` (default ``vllm.SamplingParams``) builds the engine's sampling parameters from
    :func:`sampling_kwargs`. ``batch_size`` is how many requests go to the engine at once (it batches them itself).
    """

    def __init__(self, model_path: str, prompt: str = "Describe this image", max_new_tokens: int = 200,
                 batch_size: int = 256, engine: Any | None = None,
                 sampling_params: Callable[..., Any] | None = None) -> None:
        self.model_path, self.prompt = str(model_path), prompt
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.processor = AutoProcessor.from_pretrained(self.model_path)
        self.generation_config = GenerationConfig.from_pretrained(self.model_path)
        self.sampling = sampling_kwargs(self.generation_config, max_new_tokens)
        self.prompt_text = chat_prompt(self.processor, prompt)
        self._engine, self._params_cls = engine, sampling_params

    def _vllm(self) -> tuple[Any, Callable[..., Any]]:
        """The engine and sampling-parameter class, importing vLLM (and loading the model) only when needed."""
        if self._engine is None or self._params_cls is None:
            try:
                import vllm
            except ImportError as e:
                raise RuntimeError("the vLLM caption backend needs vllm, which is not installed here: create its "
                                   "environment as the header of envs/vllm.yaml says, or use the HF backend "
                                   "(captions.backend: llava)") from e
            if self._engine is None:
                self._engine = vllm.LLM(model=self.model_path, dtype="bfloat16", limit_mm_per_prompt={"image": 1})
            self._params_cls = self._params_cls or vllm.SamplingParams
        return self._engine, self._params_cls

    def raw_generations(self, images: Sequence[ImageInput]) -> list[str]:
        """Prompt and generation token ids decoded together (special tokens skipped), as the HF path decodes."""
        engine, params_cls = self._vllm()
        params = params_cls(**self.sampling)
        tokenizer = self.processor.tokenizer
        out: list[str] = []
        for start in range(0, len(images), self.batch_size):
            requests = [{"prompt": self.prompt_text, "multi_modal_data": {"image": to_rgb_image(im)}}
                        for im in images[start:start + self.batch_size]]
            for res in engine.generate(requests, params, use_tqdm=False):
                ids = list(res.prompt_token_ids) + list(res.outputs[0].token_ids)
                out.append(tokenizer.decode(ids, skip_special_tokens=True))
        return out

    def caption_images(self, images: Sequence[ImageInput]) -> list[str]:
        """Cleaned captions, one per image, in order; ``""`` where the generation left no text at all."""
        return [clean_vlm_caption(raw) for raw in self.raw_generations(images)]

    def describe(self) -> dict:
        """JSON-able identity of the captions (as :meth:`LlavaNextCaptioner.describe`, plus the sampling params)."""
        return {"backend": "vllm", "model_path": self.model_path, "prompt": self.prompt,
                "prompt_text": self.prompt_text, "max_new_tokens": self.max_new_tokens,
                "batch_size": self.batch_size, "dtype": "bfloat16",
                "engine": "vllm.LLM" if self._engine is None else type(self._engine).__name__,
                "generation_config": self.generation_config.to_diff_dict(), "sampling_params": self.sampling,
                "transformers_version": transformers.__version__}
