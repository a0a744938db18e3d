"""``python -m comfy_install``: the steps the image build runs, without invoke.

::

    python -m comfy_install checkout --lock image/comfyui.lock.yaml --dest /opt/comfyui
    python -m comfy_install proof --lock image/comfyui.lock.yaml --comfyui /opt/comfyui \\
        --extra-model-paths /opt/comfy-runpod/extra_model_paths.yaml
    python -m comfy_install model-paths image/     # rewrite the image's extra_model_paths files

Errors print one line and exit 2 (bad input) or 1 (the proof failed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from comfy_install.errors import InstallError
from comfy_install.install import checkout_sources
from comfy_install.layout import Layout
from comfy_install.lock import load_lock
from comfy_install.mirrors import parse_mirrors
from comfy_install.models import image_model_paths
from comfy_install.proof import run_proof


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m comfy_install", description=(__doc__ or "").split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    checkout = sub.add_parser("checkout", help="clone ComfyUI and the locked node packs at their commits")
    checkout.add_argument("--lock", type=Path, required=True, help="the lock file")
    checkout.add_argument("--dest", type=Path, required=True, help="the ComfyUI folder to create or update")
    checkout.add_argument("--mirror", action="append", default=[], help="URL=PATH or URL=URL (repeatable)")
    proof = sub.add_parser(
        "proof", help="start ComfyUI once (--quick-test-for-ci); fail if a pack does not import"
    )
    proof.add_argument("--lock", type=Path, required=True, help="the lock file (names the packs)")
    proof.add_argument("--comfyui", type=Path, required=True, help="the ComfyUI folder")
    proof.add_argument("--python", default=sys.executable, help="ComfyUI's interpreter (default: this one)")
    proof.add_argument(
        "--extra-model-paths", type=Path, default=None, help="an extra_model_paths.yaml to load"
    )
    paths = sub.add_parser("model-paths", help="write the image's extra_model_paths*.yaml files")
    paths.add_argument("folder", type=Path, help="where to write them (image/)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "checkout":
            lock = load_lock(args.lock)
            for line in checkout_sources(lock, Layout(args.dest), parse_mirrors(args.mirror), echo=print):
                print(line)
            return 0
        if args.command == "proof":
            lock = load_lock(args.lock)
            with tempfile.TemporaryDirectory(prefix="comfy-proof-") as scratch:
                problems, log = run_proof(
                    args.comfyui, lock.node_names(), python=args.python, scratch=Path(scratch),
                    extra_model_paths=args.extra_model_paths,
                )  # fmt: skip
            if problems:
                print(log[-20000:], file=sys.stderr)
                for problem in problems:
                    print(f"proof failed: {problem}", file=sys.stderr)
                return 1
            print(f"proof: ComfyUI starts; {len(lock.nodes)} locked node pack(s) imported")
            return 0
        for name, text in image_model_paths().items():
            (args.folder / name).write_text(text, encoding="utf-8")
            print(f"wrote {args.folder / name}")
        return 0
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
