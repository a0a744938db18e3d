"""The worker: one job from RunPod's input to its result, over a supervised ComfyUI.

``Worker.run`` is the whole job: parse the input, make sure ComfyUI is up, write the input
files, validate, queue and follow the prompt, collect and deliver outputs, clean up. Every
failure is a ``HandlerError`` converted to the job's error payload in exactly one place
(``Worker.run``'s except clauses); anything else is a bug reported as ``INTERNAL_ERROR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from handler import outputs as out
from handler.addresses import BlockedAddress, check_host
from handler.cleanup import sweep, sweep_roots
from handler.comfy_client import ComfyClient, ComfyRequestError, loop_scoped
from handler.error_details import FieldProblem
from handler.errors import (
    ComfyUnreachable,
    HandlerError,
    InputFileError,
    InternalError,
    InvalidInput,
    JobTimeout,
    WorkerError,
    WorkflowInvalid,
    error_result,
)
from handler.execution import ProgressReporter, ProgressSink, PromptRun
from handler.input_files import (
    gather_files,
    job_relpath,
    remove_tree,
    rewrite_references,
    write_job_files,
)
from handler.inventory import Inventory, log_inventory, scan
from handler.job_context import current_job
from handler.job_input import JobInput, parse_job_input, request_secrets
from handler.redaction import Redactor
from handler.settings import S3Target, Settings
from handler.supervisor import Comfy, ComfyState
from handler.validation import FileDirs, ModelFolders, validate_workflow

log = logging.getLogger("comfy_runpod.worker")
SWEEP_EVERY_S = 60.0
HISTORY_BATCH = 16


class Worker:
    """Runs jobs one at a time against one ComfyUI (spawned or attached)."""

    def __init__(self, settings: Settings, comfy: Comfy) -> None:
        self.settings = settings
        self.comfy = comfy
        self.redactor = Redactor(settings.secrets)
        self.object_info: dict[str, Any] = {}
        self.inventory = Inventory()
        self._info_generation = -1
        self._abandoned: tuple[str, float] | None = None  # (prompt_id, monotonic) of a timeout
        self._last_sweep = 0.0
        self._lock = asyncio.Lock()
        self._client: ComfyClient | None = None
        self._read_prompts: list[str] = []
        self._client_holder: AsyncIterator[ComfyClient] | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # -- readiness ------------------------------------------------------------------------

    async def client(self) -> ComfyClient:
        """The ComfyUI client of the running event loop (one session, reused across jobs)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop or self._client.closed:
            self._client_holder = loop_scoped(self.settings.base_url)
            self._client = await anext(self._client_holder)
            self._client_loop = loop
        return self._client

    async def ensure_ready(self, client: ComfyClient) -> None:
        """ComfyUI is up, and object_info and the model inventory are current."""
        if self.comfy.state != ComfyState.READY or self.comfy.exit_since(self.comfy.generation):
            await asyncio.to_thread(self.comfy.ensure_ready)
        if self._info_generation != self.comfy.generation or not self.object_info:
            await self.refresh_info(client, log_models=self._info_generation < 0)

    async def connect(self, client: ComfyClient, run: PromptRun) -> None:
        """Open the job's websocket, which also checks that ComfyUI answers.

        A ComfyUI that is alive but does not answer (hung) is killed and restarted in spawn
        mode, or waited for in attach mode, then the connection is tried once more.
        """
        wait = max(self.settings.health_check_interval_s * 5, 5.0)
        try:
            await run.connect(timeout=wait)
            return
        except ComfyRequestError as exc:
            log.warning("ComfyUI does not answer (%s); recovering", exc)
        await asyncio.to_thread(self.comfy.kill_and_restart, f"no answer within {wait:g} s")
        await self.ensure_ready(client)
        try:
            await run.connect(timeout=wait)
        except ComfyRequestError as exc:
            raise ComfyUnreachable(f"ComfyUI at {self.comfy.base_url} does not answer: {exc}") from None

    async def refresh_info(self, client: ComfyClient, *, log_models: bool = False) -> None:
        generation = self.comfy.generation
        try:
            info, paths = await asyncio.gather(client.object_info(), client.folder_paths())
        except ComfyRequestError as exc:
            raise ComfyUnreachable(f"ComfyUI did not answer /object_info: {exc}") from None
        self.object_info = info
        self.inventory = await asyncio.to_thread(scan, paths if isinstance(paths, dict) else {})
        self._info_generation = generation
        if log_models:
            log_inventory(self.inventory)

    def model_folders(self) -> ModelFolders:
        return ModelFolders(paths=self.inventory.paths, files=self.inventory.names())

    def file_dirs(self) -> FileDirs:
        s = self.settings
        return FileDirs(input=s.input_dir, output=s.output_dir, temp=s.temp_dir)

    # -- the job --------------------------------------------------------------------------

    async def run(self, job: dict[str, Any], progress: ProgressSink | None = None) -> dict[str, Any]:
        """Run one RunPod job; returns the handler result (output dict or ``{"error": ...}``)."""
        job_id = str(job.get("id") or "local")
        job_token = current_job.set(job_id)  # every log line of this job carries its id
        try:
            # One ComfyUI, one job at a time; the job's own secrets are redacted while it runs.
            async with self._lock:
                with self.redactor.job(*request_secrets(job)):
                    return await self._run_guarded(job_id, job, progress)
        finally:
            current_job.reset(job_token)

    async def _run_guarded(
        self, job_id: str, job: dict[str, Any], progress: ProgressSink | None
    ) -> dict[str, Any]:
        """``_run`` with every outcome logged and every failure turned into an error result."""
        started = time.perf_counter()
        try:
            result = await self._run(job_id, job, progress, started)
            log.info("job %s COMPLETED in %.3f s", job_id, time.perf_counter() - started)
            return result
        except HandlerError as exc:
            return self._failed(job_id, exc, started)
        except asyncio.CancelledError:
            log.warning("job %s CANCELLED after %.3f s", job_id, time.perf_counter() - started)
            raise
        except Exception as exc:  # the one place a bug becomes a job error
            log.exception("job %s: unexpected error", job_id)
            error = InternalError(
                f"unexpected {type(exc).__name__} in the worker: {exc}",
                diagnostics={"traceback": traceback.format_exc()},
            )
            return self._failed(job_id, error, started)
        finally:
            self._maybe_sweep()

    def _failed(self, job_id: str, error: HandlerError, started: float) -> dict[str, Any]:
        diagnostics = {
            "comfyui": self.comfy.describe(),
            "log_tail": self.comfy.log_tail(40),
            "models": self.inventory.summary(),
            **error.diagnostics,
        }
        if isinstance(error, WorkerError | InternalError) and error.__cause__ is not None:
            diagnostics.setdefault("traceback", "".join(traceback.format_exception(error.__cause__)))
        error.diagnostics = diagnostics
        log.error(
            "job %s FAILED %s after %.3f s: %s",
            job_id,
            error.code,
            time.perf_counter() - started,
            self.redactor.text(error.message),
        )
        return error_result(error, self.redactor)

    async def _run(
        self, job_id: str, job: dict[str, Any], progress: ProgressSink | None, started: float
    ) -> dict[str, Any]:
        spec = parse_job_input(
            job.get("input"),
            max_timeout_s=7 * 24 * 3600,
            max_input_bytes=self.settings.max_input_bytes,
            s3_config=job.get("s3Config"),
        )
        await self._check_request_bucket(spec)
        # A request for s3 delivery without a bucket fails now, not after the GPU work.
        out.choose_mode(spec.output_mode or self.settings.output_mode, 0, 1, self._bucket(spec))
        timeout_s = spec.timeout_s or self.settings.execution_timeout_s
        deadline = time.monotonic() + timeout_s
        job_rel = job_relpath(job_id)
        workflow = copy.deepcopy(spec.workflow)
        input_folder: Path | None = None
        timings: dict[str, float] = {}

        client = await self.client()
        try:
            await self._recover_from_abandoned(client)
            await self.ensure_ready(client)
            log.info(
                "job %s: %d nodes, %d input files, timeout %.0f s; models: %s",
                job_id,
                len(workflow),
                len(spec.files),
                timeout_s,
                self.inventory.summary_line(),
            )
            reporter = ProgressReporter(progress, len(workflow), self.settings.progress_interval_s)
            reporter.set_classes(workflow)
            run = PromptRun(
                client,
                self.comfy,
                job_id=job_id,
                health_interval_s=self.settings.health_check_interval_s,
                progress=reporter,
            )
            connected = asyncio.ensure_future(self.connect(client, run))
            try:
                try:
                    if spec.files:
                        input_folder = await self._write_inputs(client, job_id, spec, workflow, job_rel)
                    await self._validate(client, workflow)
                finally:
                    await connected  # errors of the connection win: ComfyUI is the bigger problem
            except BaseException:
                await run.close()  # the job ends before the prompt: close its websocket here
                raise
            out.rewrite_prefixes(workflow, job_rel)
            try:
                result = await run.run(workflow, deadline)
            except JobTimeout:
                self._abandoned = (run.prompt_id, time.monotonic())
                raise
            timings["queue_wait_s"] = _delta(result.queued_at, result.started_at)
            timings["execution_s"] = result.comfy_execution_s() or _delta(
                result.started_at, result.finished_at
            )
            refs, texts = out.collect(result.history.get("outputs") or {}, include_temp=spec.include_temp)
            contents = await out.read_files(client, refs)
            await self._forget(client, run.prompt_id)
            mode = out.choose_mode(
                spec.output_mode or self.settings.output_mode,
                out.encoded_size(contents),
                self.settings.auto_threshold_bytes,
                self._bucket(spec),
            )
            if mode == "s3":
                await self._check_request_bucket(spec)  # again: DNS may have changed meanwhile
            entries, deliver_s = await out.deliver(
                job_id=job_id,
                job_rel=job_rel,
                refs=refs,
                contents=contents,
                mode=mode,
                bucket=self._bucket(spec),
                url_expiry_s=self.settings.bucket_url_expiry_s,
            )
            timings["encode_upload_s"] = deliver_s
            timings["total_s"] = time.perf_counter() - started
            return {
                "outputs": entries + texts,
                "prompt_id": run.prompt_id,
                "delivery": mode,
                "cached_nodes": result.cached_nodes,
                "timings": {k: round(v, 4) for k, v in timings.items()},
            }
        finally:
            if input_folder is not None:
                remove_tree(input_folder)
            if self.settings.output_dir is not None:
                remove_tree(self.settings.output_dir / job_rel)

    async def _forget(self, client: ComfyClient, prompt_id: str) -> None:
        """Drop read history entries: ComfyUI keeps up to 10,000 in memory, prompts included.

        Deleted in batches, so a job pays for one extra request only every
        ``HISTORY_BATCH`` jobs.
        """
        self._read_prompts.append(prompt_id)
        if len(self._read_prompts) < HISTORY_BATCH:
            return
        batch, self._read_prompts = self._read_prompts, []
        with contextlib.suppress(ComfyRequestError):
            await client.delete_history(batch)

    async def _check_request_bucket(self, spec: JobInput) -> None:
        """A request's own S3 endpoint must be public, like its input URLs (no SSRF by upload).

        The endpoint's ``BUCKET_*`` bucket is the operator's and is not checked.
        """
        if spec.s3 is None or self.settings.allow_private_urls:
            return
        try:
            await check_host(spec.s3.endpoint_url)
        except BlockedAddress as exc:
            raise InvalidInput(
                f"the request's S3 endpoint is refused: {exc}",
                [
                    FieldProblem(
                        field="output.s3.endpoint_url (or s3Config.endpointUrl)",
                        message=str(exc),
                        fix="use a public S3 endpoint, or leave output.s3 out (the endpoint's bucket)",
                    )
                ],
            ) from None

    def _bucket(self, spec: JobInput) -> S3Target | None:
        return spec.s3 or self.settings.bucket

    async def _write_inputs(
        self, client: ComfyClient, job_id: str, spec: JobInput, workflow: dict[str, Any], job_rel: str
    ) -> Path | None:
        """Place the job's input files in its folder; returns the folder when it is local.

        A ComfyUI whose input directory is not known here (attach mode without
        ``COMFYUI_INPUT_DIR``, e.g. a remote one) gets them through its upload API instead.
        """
        data = await gather_files(
            spec.files,
            max_bytes=self.settings.max_input_bytes,
            timeout_s=self.settings.url_timeout_s,
            allow_private=self.settings.allow_private_urls,
        )
        folder = None
        if self.settings.input_dir is not None:
            folder = await asyncio.to_thread(write_job_files, self.settings.input_dir, job_id, data)
        else:
            await self._upload_inputs(client, data, job_rel)
        rewrite_references(workflow, [f.name for f in spec.files], job_rel)
        return folder

    async def _upload_inputs(self, client: ComfyClient, data: list[tuple[str, bytes]], job_rel: str) -> None:
        for name, content in data:
            folder, _, filename = f"{job_rel}/{name}".rpartition("/")
            try:
                answer = await client.upload_input(content, filename, folder)
            except ComfyRequestError as exc:
                hint = " (over ComfyUI's --max-upload-size)" if exc.status == 413 else ""
                raise InputFileError(
                    f"ComfyUI refused the upload of input {name!r}{hint}: {exc}",
                    [FieldProblem(field=f"files[{name!r}]", message=str(exc))],
                ) from None
            if (answer.get("name"), answer.get("subfolder")) != (filename, folder):
                raise InputFileError(
                    f"ComfyUI stored input {name!r} as {answer.get('subfolder')}/{answer.get('name')} "
                    "instead of where the workflow will look for it",
                    [FieldProblem(field=f"files[{name!r}]", message=f"upload answered {answer}")],
                )

    async def _validate(self, client: ComfyClient, workflow: dict[str, Any]) -> None:
        problems = validate_workflow(workflow, self.object_info, self.model_folders(), self.file_dirs())
        if any(p.type in ("unknown_class", "value_not_in_list") for p in problems):
            # Models may have been synced, or nodes installed, since the cache was filled.
            await self.refresh_info(client)
            problems = validate_workflow(workflow, self.object_info, self.model_folders(), self.file_dirs())
        if problems:
            summary = "; ".join(
                f"node {p.node_id} ({p.class_type}){' input ' + p.input if p.input else ''}: {p.message}"
                for p in problems[:3]
            )
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise WorkflowInvalid(f"the workflow has {len(problems)} problem(s): {summary}{more}", problems)

    async def _recover_from_abandoned(self, client: ComfyClient) -> None:
        """After a timeout, make sure the interrupted prompt really stopped; else restart."""
        if self._abandoned is None or self.comfy.state != ComfyState.READY:
            self._abandoned = None
            return
        prompt_id, since = self._abandoned
        while True:
            try:
                queue = await client.queue()
            except ComfyRequestError:
                break
            running = [item[1] for item in queue.get("queue_running") or [] if len(item) > 1]
            if prompt_id not in running:
                break
            if time.monotonic() - since > self.settings.interrupt_grace_s:
                await asyncio.to_thread(
                    self.comfy.kill_and_restart,
                    f"prompt {prompt_id} ignored the interrupt for {self.settings.interrupt_grace_s:g} s",
                )
                break
            await asyncio.sleep(0.05)
        self._abandoned = None

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_EVERY_S:
            return
        self._last_sweep = now
        s = self.settings
        try:
            sweep(sweep_roots(s.input_dir, s.output_dir, s.temp_dir), s.cleanup_age_s)
        except OSError as exc:
            log.warning("cleanup sweep failed: %s", exc)


def _delta(start: float | None, end: float | None) -> float:
    return end - start if start is not None and end is not None else 0.0
