"""KerasHub presets, named on the command line: the forms a preset takes, a local one's check before any work, and
KerasHub itself (optional: ``Requirements-hub.txt``). Standard library only, so a command checks its flags at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from emorec.errors import InputError

HUB_REQUIREMENTS = "Requirements-hub.txt"
PRESET_FORMS = (
    "a preset is a KerasHub name (e.g. bert_base_en_uncased), a Hugging Face handle of an architecture KerasHub "
    "converts (hf://sentence-transformers/all-MiniLM-L6-v2), a Kaggle handle (kaggle://...), or a local folder: "
    "KerasHub's layout (save_to_preset) or Hugging Face's (config.json, model.safetensors and the tokenizer's "
    "files: vocab.txt for a WordPiece tokenizer)"
)


IMAGE_PRESET_FORMS = (
    "an image preset is a KerasHub name (e.g. clip_vit_base_patch16 or resnet_50_imagenet, downloaded once into "
    "KerasHub's cache), a Hugging Face handle of an architecture KerasHub converts (hf://google/vit-base-patch16-224, "
    "hf://timm/resnet50.a1_in1k), a Kaggle handle (kaggle://...), or a local folder: KerasHub's layout "
    "(save_to_preset), Hugging Face's (config.json, model.safetensors and preprocessor_config.json) or timm's "
    "(config.json with pretrained_cfg, model.safetensors); without network, a local folder"
)


def is_local(preset: str) -> bool:
    """Whether ``preset`` names a local folder rather than a KerasHub name or a hub handle."""
    return "://" not in preset and (os.sep in preset or preset.startswith((".", "~")) or Path(preset).exists())


def preset_location(preset: str) -> str:
    """What KerasHub's ``from_preset`` is given for ``preset``: a local folder with ``~`` expanded, else the name."""
    return str(Path(preset).expanduser()) if is_local(preset) else preset


def require_local_preset(preset: str, what: str, forms: str = PRESET_FORMS) -> None:
    """Raise :class:`InputError` when ``preset`` names a local folder that does not exist (``what``: the flag;
    ``forms``: what a preset may be, :data:`PRESET_FORMS` or :data:`IMAGE_PRESET_FORMS`)."""
    if is_local(preset) and not Path(preset).expanduser().is_dir():
        raise InputError(f"{what} {preset!r}: no such folder; {forms}")


def load_failure(what: str, preset: str, error: BaseException, forms: str = PRESET_FORMS) -> InputError:
    """The one error for a preset KerasHub could not load (not found, no network, another architecture): ``what``
    it was to be, the exception's kind and first line, and the ``forms`` a preset takes. A Hugging Face handle
    that could not be downloaded says why (KerasHub reports only a missing config.json) and what to do."""
    unreachable = hugging_face_unreachable() if preset.startswith("hf://") else None
    if unreachable:
        handle = preset.removeprefix("hf://")
        folder = f"models/{handle.rsplit('/', 1)[-1]}"
        return InputError(
            f"{what} {preset!r} could not be downloaded: {unreachable}. Download it on a machine with network "
            f"(`hf download {handle} --local-dir {folder}`), copy the folder here and name it instead of the "
            f"handle ({folder}); {forms}"
        )
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else "no message"
    return InputError(f"{what} {preset!r} could not be loaded ({type(error).__name__}: {first_line}); {forms}")


def hugging_face_unreachable(timeout: float = 3.0) -> str | None:
    """Why nothing can be downloaded from the Hugging Face Hub (offline mode set, or its server not reached), or
    None when its server answers a connection."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set, so nothing is downloaded"
    address = urlsplit(constants.ENDPOINT)
    host, port = address.hostname, address.port or (443 if address.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return f"no network: {host}:{port} cannot be reached ({error})"
    return None


def import_keras_hub():
    """``keras_hub``, or an :class:`InputError` saying how to install it."""
    try:
        import keras_hub
    except ImportError as error:
        raise InputError(
            f"a pretrained encoder needs KerasHub, which is not installed ({error}): pip install -r {HUB_REQUIREMENTS}"
        ) from error
    return keras_hub
