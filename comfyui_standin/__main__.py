"""``python -m comfyui_standin [ComfyUI main.py flags]``: the stand-in as a process.

The current directory, or ``--base-directory DIR`` as in ComfyUI, plays the ComfyUI checkout
(input/, output/, temp/, models/ and extra_model_paths.yaml are looked up there unless flags
say otherwise). From the repository root: ``uv run python -m comfyui_standin --base-directory
/tmp/standin --port 8188``.
"""

import sys
from pathlib import Path

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], comfy_dir=Path.cwd(), argv0="main.py"))
