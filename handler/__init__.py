"""comfy-runpod worker: runs ComfyUI workflows as RunPod serverless jobs.

The entry point is ``handler/handler.py`` (run as ``python -u handler/handler.py`` in the
image). The modules here each do one job:

- ``environment``: the table of every environment variable the worker reads (name, parser, default, doc).
- ``settings``: typed configuration read once from the environment, through that table.
- ``supervisor``: the ComfyUI process (start, readiness, log tail, restart) or an attached one.
- ``comfy_client``: ComfyUI's HTTP and websocket API; ``events``: typed websocket events.
- ``job_input``: the job's input schema; ``input_files``: input files fetched and placed safely.
- ``addresses``: which addresses a job's URLs may reach; ``redaction``: secrets kept out of output.
- ``validation``: workflow checks against ``/object_info`` before queueing.
- ``execution``: following one prompt to its end (progress, timeout, cancel, crash).
- ``outputs``: every output of the prompt, as base64 or uploaded to S3.
- ``errors``: the error tree and the one place errors become job payloads.
- ``worker``: wires the pieces and runs one job.
"""
