"""comfy-runpod's ComfyUI extension: "Queue on RunPod" (see README, "Queue on RunPod").

Copied alone into ``ComfyUI/custom_nodes/`` it works with what ComfyUI already has (aiohttp).
``endpoint_client`` is the project's one client for RunPod's job API; the repository's
``tasks.py`` imports it from here too.
"""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
