"""Model sync: local ComfyUI models onto the RunPod network volume, incrementally and verifiably.

Two transports share the same selection (folders, workflow) and the same object layout
(``comfyui/models/<folder>/<file>``, as the files appear under ``/runpod-volume/``):

- ``s3sync``: RunPod's S3-compatible API, incremental (only new or changed files), multipart
  with parallel parts, resumable;
- ``zipsend``: a zip with a sha256 manifest sent with ``runpodctl send``, extracted and
  verified on a pod by a generated script.
"""
