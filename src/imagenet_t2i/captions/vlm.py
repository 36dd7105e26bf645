"""Post-processing of raw VLM (LLaVA-NeXT) generations, as in the paper's captioning script."""
from __future__ import annotations


def clean_vlm_caption(raw: str) -> str:
    """Keep the text after the last "assistant" marker, remove newlines, cut after the last ".".

    Mirrors the official ``postprocess_caption``: newlines are deleted (not replaced by spaces),
    an unfinished last sentence is dropped, and the result always ends with "." (one is appended
    when the text has none). Unlike the official code, surrounding whitespace is stripped.
    """
    text = raw.split("assistant")[-1].replace("\n", "")
    if "." in text:
        text = text[: text.rfind(".")]
    return text.strip() + "."
