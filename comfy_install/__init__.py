"""One lock, two installs: the worker image and the local ComfyUI that mirrors it.

``image/comfyui.lock.yaml`` pins ComfyUI and every custom node pack to a commit;
``image/requirements.lock.txt`` pins every Python package. The image build and ``invoke setup``
install exactly that; ``invoke doctor`` says where a local install differs. This package is the
logic behind those tasks (``tasks/comfyui.py``, ``tasks/image.py``) and behind the build's own
steps (``python -m comfy_install``). Standard library only, except PyYAML for the lock and
``packaging`` for the pins' markers (loaded only when ``parity`` compares; the build never does).

Modules, one concept each:

- ``lock``: the lock file, its validation, digest and in-place commit edits
- ``mirrors``: redirecting the lock's URLs (``--mirror``, ``COMFY_RUNPOD_MIRRORS``)
- ``git``: checkouts at exact commits, idempotent
- ``pins``: ``requirements.lock.txt`` and the ``uv`` command lines that make and install it
- ``layout``: where a local install keeps things; the active copy and the workflows link
- ``install``: the checkouts (image and local) and ``invoke setup``
- ``update``: ``invoke lock-update``
- ``parity``: the pins and the project's ``uv.lock`` agree on every package both install
- ``drift``: ``invoke doctor``'s comparison of an install with the lock
- ``models``: the model folders and ``extra_model_paths.yaml``
- ``launch``: the local ComfyUI's command line
- ``docker``: image references and the docker command lines
- ``proof``: the build-time check that every locked pack imports
- ``errors``: the exception tree (see its docstring)
"""

from comfy_install.errors import (
    CommandError,
    FetchError,
    InstallError,
    LockError,
    MirrorError,
    WorkTreeError,
)
from comfy_install.lock import Lock, NodePack, load_lock, lock_digest, parse_lock

__all__ = [
    "CommandError",
    "FetchError",
    "InstallError",
    "Lock",
    "LockError",
    "MirrorError",
    "NodePack",
    "WorkTreeError",
    "load_lock",
    "lock_digest",
    "parse_lock",
]
