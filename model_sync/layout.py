"""Where models go: the image's folder layout (``comfy_install.models``), as object keys.

The keys are paths relative to the volume root, so an object ``comfyui/models/loras/x.safetensors``
is the file ``/runpod-volume/comfyui/models/loras/x.safetensors`` on a worker. The folder list
is the image's own (``comfy_install.models.MODEL_FOLDERS``), never a copy.
"""

from __future__ import annotations

from comfy_install.models import MODEL_FOLDERS, SERVERLESS_MODELS_ROOT

VOLUME_ROOT = "/runpod-volume"
# comfyui/models: the models root of the image, relative to the volume root.
DEFAULT_PREFIX = SERVERLESS_MODELS_ROOT.removeprefix(VOLUME_ROOT).strip("/")


def all_subfolders() -> tuple[str, ...]:
    """Every directory name ComfyUI searches (legacy ``clip/``, ``unet/``, ``t2i_adapter/`` included)."""
    return tuple(sorted({sub for _, subs in MODEL_FOLDERS for sub in subs}))


def expand_folders(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The directories selected by ``--folder`` names: a type key brings its legacy folders too.

    Raises ``ValueError`` naming the unknown folder and the valid ones.
    """
    if not names:
        return all_subfolders()
    by_key = dict(MODEL_FOLDERS)
    known = set(all_subfolders())
    out: set[str] = set()
    for name in names:
        name = name.strip("/")
        if name in by_key:
            out.update(by_key[name])
        elif name in known:
            out.add(name)
        else:
            raise ValueError(f"unknown model folder {name!r} (one of: {', '.join(sorted(known))})")
    return tuple(sorted(out))


def folder_type(subfolder: str) -> str:
    """The folder type key of a directory (``clip`` -> ``text_encoders``)."""
    for key, subs in MODEL_FOLDERS:
        if subfolder in subs:
            return key
    return subfolder


def object_key(prefix: str, relpath: str) -> str:
    """The object key of a file at ``relpath`` (``<folder>/<file>``, '/'-separated) under ``prefix``."""
    prefix = prefix.strip("/")
    return f"{prefix}/{relpath}" if prefix else relpath


def relpath_of(prefix: str, key: str) -> str | None:
    """The inverse of :func:`object_key`; None for a key outside ``prefix``."""
    prefix = prefix.strip("/")
    if not prefix:
        return key
    return key[len(prefix) + 1 :] if key.startswith(prefix + "/") else None
