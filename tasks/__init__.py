"""comfy-runpod's tasks (invoke), run on the user's machine.

``uv run invoke --list`` shows them; ``uv run invoke --help <task>`` explains one. Bad
arguments end with a one-line message, not a traceback. One module per area:

- ``endpoint``: run workflows on an endpoint (RunPod's or the local one), status, cancel, ...
- ``local``: the local endpoint and the demo, with a local ComfyUI or the stand-in
- ``docs``: the README's generated parts (the worker's configuration table)
- ``observe``: watch the endpoint: workers, logs, releases, cost (RunPod's REST API v2)
- ``devtools``: ``dev-tools``, the pinned Pulumi CLI and S3 server the tests run against
"""

import sys
from pathlib import Path

from invoke.collection import Collection

# invoke imports this package by path: make the repository's other folders importable too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import comfyui, devtools, docs, endpoint, image, local, models, observe

ns = Collection()
for module in (endpoint, local, comfyui, image, models, docs, observe, devtools):
    for name, item in Collection.from_module(module).tasks.items():
        ns.add_task(item, name=name)
