"""Model weights the pipeline loads: downloaded once (paper) or built random-init from a config (offline tests).

The config's ``weights`` block names every model folder: ``{hub: <repo id>, revision, allow_patterns}``
is fetched from the Hugging Face hub by the ``weights`` rule (on the login node, the one machine of a
cluster that reaches the network) at the commit the revision resolves to (recorded), ``{url, sha256 | blob}``
is one checked file, ``{random_init: <kind>}`` is a tiny random-init model built from a config (offline smoke
runs and tests; built by `imagenet_t2i.random_init`, not here), ``{path: <folder>}`` is a copy already on disk. A model section (``captions``,
``encode.autoencoder``, ``encode.text``) names its folder with ``weights: <name>`` or gives a ``path``; the
evaluation names its entries in ``eval``. Every fetched folder gets a ``manifest.json`` (sha256 per file).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from imagenet_t2i.config import ConfigError

# Files a hub snapshot keeps: one format of each model (safetensors), configs and tokenizer files.
DEFAULT_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
MODEL_SECTIONS = {"captions": ("captions",), "autoencoder": ("encode", "autoencoder"), "text": ("encode", "text")}


INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's FID Inception weights


def weights_dir(config: dict, name: str) -> str:
    """Where the ``weights`` rule puts folder ``name``: ``results/<cfg>/weights/<name>``."""
    return f"results/{config['name']}/weights/{name}"


def weights_location(config: dict, name: str) -> str:
    """Where weights entry ``name`` is read from: its ``path``, or the folder the ``weights`` rule fills."""
    spec = config.get("weights", {}).get(name)
    if spec is None:
        raise ConfigError(f"config: weights entry '{name}' is not defined (defined: {sorted(config.get('weights', {}))})")
    return spec["path"] if "path" in spec else weights_dir(config, name)


def section(config: dict, part: str) -> dict:
    """A model section of the config: ``captions``, ``autoencoder`` or ``text`` (``encode.<part>``)."""
    node = config
    for key in MODEL_SECTIONS[part]:
        node = node[key]
    return node


def model_path(config: dict, part: str) -> str | None:
    """The folder (or hub id) a model section loads: its ``path``, its weights entry's ``path``, or the
    folder the ``weights`` rule writes."""
    sec = section(config, part)
    return weights_location(config, sec["weights"]) if "weights" in sec else sec.get("path")


def resolved(config: dict, part: str) -> dict:
    """A model section with ``path`` resolved (what ``make_autoencoder`` / ``make_text_encoder`` take)."""
    out = {k: v for k, v in section(config, part).items() if k != "weights"}
    path = model_path(config, part)
    if path is not None:
        out["path"] = path
    return out


def fetch(spec: dict, out_dir: str | os.PathLike) -> str:
    """Fill ``out_dir`` from one ``hub`` or ``url`` entry of the ``weights`` block (`fill_folder`); -> a description."""
    if "hub" in spec:
        return fill_folder(out_dir, lambda tmp: _download(spec, tmp))
    if "url" in spec:
        return fill_folder(out_dir, lambda tmp: _download_url(spec, tmp))
    if "random_init" in spec:
        raise ConfigError(f"weights entry {spec}: a random-init stand-in is built by imagenet_t2i.random_init.build")
    raise ConfigError(f"weights entry {spec}: a 'path' entry is read in place, nothing to fetch")


def fill_folder(out_dir: str | os.PathLike, build: Callable[[Path], str]) -> str:
    """Fill ``out_dir`` atomically: ``build`` writes a temporary folder (which it creates), `write_manifest` lists it,
    and it is renamed onto ``out_dir``; -> what ``build`` returns (a description)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    what = build(tmp)
    write_manifest(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return what


def write_manifest(folder: Path) -> None:
    """``manifest.json`` listing every file's sha256 (hashed once here: provenance then hashes the manifest, not
    16 GB of weights per job)."""
    from imagenet_t2i.io import write_json
    from imagenet_t2i.provenance import sha256_files

    files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(folder).parts))
    digests = sha256_files(files, desc=f"hash {folder.name}")
    write_json(folder / "manifest.json", {"files": [
        {"name": str(p.relative_to(folder)), "sha256": d, "bytes": p.stat().st_size} for p, d in zip(files, digests)]})


def file_name(spec: dict) -> str:
    """The file a ``url`` entry fetches (``filename``, else the URL's last part)."""
    return spec.get("filename") or spec["url"].rstrip("/").rsplit("/", 1)[-1].split("?")[0]


def weights_file(config: dict, name: str) -> str:
    """The single file of a ``url`` entry (or of a random-init stand-in of one: the same name)."""
    spec = config["weights"][name]
    if "path" in spec:
        return spec["path"]
    fname = INCEPTION_FILE if spec.get("random_init") == "inception" else file_name(spec)
    return f"{weights_dir(config, name)}/{fname}"


def _download_url(spec: dict, tmp: Path) -> str:
    """One file from a URL, checked against ``sha256`` (or a git ``blob`` id) when the entry gives one."""
    import hashlib
    import urllib.request

    from imagenet_t2i.io import sha256_file

    tmp.mkdir(parents=True)
    target = tmp / file_name(spec)
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise RuntimeError(f"cannot fetch {spec['url']}: offline (HF_HUB_OFFLINE=1). Run the weights rule where the "
                           "network is reachable, or download the file yourself and give it as `weights.<name>.path`")
    with urllib.request.urlopen(spec["url"], timeout=60) as r, open(target, "wb") as f:  # noqa: S310 (config URL)
        shutil.copyfileobj(r, f, 1 << 20)
    if "sha256" in spec and sha256_file(target) != spec["sha256"]:
        raise RuntimeError(f"{spec['url']}: sha256 {sha256_file(target)} differs from the config's {spec['sha256']}")
    if "blob" in spec:
        data = target.read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        if blob != spec["blob"]:
            raise RuntimeError(f"{spec['url']}: git blob id {blob} differs from the config's {spec['blob']}")
    return f"url {spec['url']}"


def _download(spec: dict, tmp: Path) -> str:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, revision = spec["hub"], spec.get("revision")
    try:
        commit = HfApi().model_info(repo, revision=revision).sha  # the exact commit, recorded in provenance
        snapshot_download(repo, revision=commit, local_dir=tmp,
                          allow_patterns=spec.get("allow_patterns", DEFAULT_PATTERNS))
    except (LocalEntryNotFoundError, OSError) as e:
        raise RuntimeError(
            f"cannot fetch {repo} (revision {revision or 'main'}): {e}. Run the weights rule where the hub is "
            f"reachable (HF_HUB_OFFLINE unset), or download the model yourself and give its folder as "
            f"`weights.<name>.path`") from None
    return f"hub {repo} at commit {commit} (revision {revision or 'main'})"
