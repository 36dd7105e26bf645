"""Post-processing of raw VLM (LLaVA-NeXT) generations, as in the paper's captioning script."""
from __future__ import annotations


def clean_vlm_caption(raw: str) -> str:
    """Keep the text after the last "assistant" marker, remove newlines, cut after the last ".".

    Mirrors the official ``postprocess_caption``: newlines are deleted (not replaced by spaces),
    an unfinished last sentence is dropped, and the result always ends with "." (one is appended
    when the text has none). Unlike the official code, surrounding whitespace is stripped, and a
    generation that leaves no text (empty, only newlines, spaces or a bare ".") gives ``""``
    rather than ".", so that the caption stage sees it as empty (``write_captions`` refuses it).
    As in the official code, a caption that itself says "assistant" keeps only what follows it.
    """
    text = raw.split("assistant")[-1].replace("\n", "")
    if "." in text:
        text = text[: text.rfind(".")]
    text = text.strip()
    return f"{text}." if text else ""
