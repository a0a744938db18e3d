"""The stand-in's aiohttp application: ComfyUI 0.3.64's HTTP routes and websocket.

:func:`create_app` builds a ``web.Application`` around a :class:`StandinServer`, which holds
the state (queue, history, caches via the executor, websockets, request log). The same app
runs in a test's background thread (``runner.StandinComfyUI``) and as its own process
(``cli.main``).

Route behaviour follows ComfyUI's ``server.py``: every route is also served under ``/api``
(the ``/internal`` sub-application is not, as in ComfyUI), bodies and status codes match the
captured responses (empty 200 bodies for ``/interrupt``, ``/free``, ``/queue``, ``/history``
POSTs; ``{}`` for an unknown history id; 400/403/404 rules of ``/view``; upload dedupe and
renaming), and a foreign ``Origin`` on a loopback ``Host`` gets an empty 403.

Deliberate differences: no frontend (``GET /`` is a stub page), no user/settings routes, and
the origin check treats host names other than ``localhost`` as non-loopback without a DNS
lookup. Given a :class:`~.frontend.Frontend` (opt-in), the app also serves the real frontend,
the user/settings routes and the custom nodes under ``custom_nodes/`` (see ``frontend.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import mimetypes
import os
import struct
import sys
import threading
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp
from aiohttp import web
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .config import StandinSettings
from .executor import ExecutionRecord, PromptExecutor, PromptWorker
from .prompt_queue import PromptQueue, QueueItem
from .registry import NodeRegistry
from .validation import PromptValidator

if TYPE_CHECKING:
    from .frontend import Frontend

log = logging.getLogger("comfyui_standin")

COMFYUI_VERSION = "0.3.64"
FRONTEND_VERSION = "1.27.10"
TEMPLATES_VERSION = "0.1.95"
PYTORCH_VERSION = "2.14.1+cu130"
#: What the stand-in reports as GPU when not started with ``--cpu``.
FAKE_GPU_NAME = "cuda:0 NVIDIA Stand-in GPU : cudaMallocAsync"
FAKE_VRAM_TOTAL = 24 * 1024**3

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

mimetypes.init()
mimetypes.add_type("application/javascript; charset=utf-8", ".js")
mimetypes.add_type("image/webp", ".webp")


class _RequestFields(NamedTuple):
    method: str
    path: str
    json: Any


class RecordedRequest(_RequestFields):
    """``(method, path, json_body_or_None)`` of one request; ``.query`` holds the query.

    Compares equal to a plain 3-tuple, so ``("POST", "/interrupt", {"prompt_id": p}) in
    standin.requests`` works. ``path`` excludes the query string; multipart bodies are
    recorded as ``None``.
    """

    query: dict[str, str]

    def __new__(
        cls, method: str, path: str, json: Any, query: dict[str, str] | None = None
    ) -> RecordedRequest:
        self = super().__new__(cls, method, path, json)
        self.query = dict(query or {})
        return self


class _Socket(NamedTuple):
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None


class WebSocketHub:
    """Connected websockets and the ordered outgoing event queue (ComfyUI's ``send_sync``)."""

    def __init__(self) -> None:
        self.sockets: dict[str, _Socket] = {}
        self.metadata: dict[str, dict[str, Any]] = {}
        self.messages: asyncio.Queue[tuple[str | int, Any, str | None]] = asyncio.Queue()

    def send_sync(self, event: str | int, data: Any, sid: str | None = None) -> None:
        """Queue an event; ``sid=None`` means every socket. Order is preserved."""
        self.messages.put_nowait((event, data, sid))

    def supports_feature(self, sid: str | None, feature: str) -> bool:
        if sid is None or sid not in self.metadata:
            return False
        return self.metadata[sid].get("feature_flags", {}).get(feature, False) is True

    async def publish_loop(self) -> None:
        while True:
            event, data, sid = await self.messages.get()
            try:
                await self.send(event, data, sid)
            finally:
                self.messages.task_done()

    async def send(self, event: str | int, data: Any, sid: str | None = None) -> None:
        if isinstance(event, int):
            message: bytes | dict[str, Any] = struct.pack(">I", event) + bytes(data)
        else:
            message = {"type": event, "data": data}
        if sid is None:
            targets = list(self.sockets.values())
        elif sid in self.sockets:
            targets = [self.sockets[sid]]
        else:
            return
        for socket in targets:
            try:
                if isinstance(message, bytes):
                    await socket.ws.send_bytes(message)
                else:
                    await socket.ws.send_json(message)
            except (aiohttp.ClientError, ConnectionError, RuntimeError) as err:
                log.warning("send error: %s", err)

    async def drop_all(self, *, graceful: bool) -> int:
        """Close every socket: a close frame (``graceful``) or an aborted TCP connection.

        Events queued before the call are delivered first, so clients see the prompt's events
        up to the node that drops them, as they would from a real server whose connection dies.
        """
        await self.messages.join()
        sockets = list(self.sockets.values())
        for socket in sockets:
            if graceful:
                await socket.ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
            elif socket.transport is not None:
                socket.transport.abort()
        log.warning("standin: dropped %d websocket(s) (%s)", len(sockets), "close" if graceful else "abort")
        return len(sockets)

    async def close_all(self) -> None:
        for socket in list(self.sockets.values()):
            with contextlib.suppress(Exception):
                await socket.ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)


def _has_prompt_id(prompt_id: str) -> Callable[[QueueItem], bool]:
    return lambda item: item[1] == prompt_id


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


def _origin_mismatch(request: web.Request) -> bool:
    """ComfyUI's origin-only check: Host and Origin host names must match on loopback."""
    if "Host" not in request.headers or "Origin" not in request.headers:
        return False
    host_domain: str | None = request.headers["Host"].lower()
    parsed = urllib.parse.urlparse(request.headers["Origin"])
    origin_domain: str | None = parsed.netloc.lower()
    host_parsed = urllib.parse.urlsplit("//" + (host_domain or ""))
    loopback = _is_loopback(host_parsed.hostname)
    try:
        origin_port = parsed.port
    except ValueError:
        origin_port = None
    if origin_port is None:
        host_domain = host_parsed.hostname
    try:
        host_port = host_parsed.port
    except ValueError:
        host_port = None
    if host_port is None:
        origin_domain = parsed.hostname
    return bool(loopback and host_domain and origin_domain and host_domain != origin_domain)


def _memory() -> tuple[int, int]:
    """(total, available) system RAM in bytes."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    with contextlib.suppress(OSError, ValueError), Path("/proc/meminfo").open() as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    return total, available


class Observations:
    """What tests may inspect from another thread: requests received and nodes executed.

    Kept outside :class:`StandinServer` so that it survives a restart of an in-process
    stand-in (the record of a test run, not server state).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._executions: list[ExecutionRecord] = []

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def executions(self) -> list[ExecutionRecord]:
        with self._lock:
            return list(self._executions)

    def add_request(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def add_execution(self, record: ExecutionRecord) -> None:
        with self._lock:
            self._executions.append(record)


class StandinServer:
    """State and route handlers of one stand-in ComfyUI."""

    def __init__(
        self,
        settings: StandinSettings,
        registry: NodeRegistry | None = None,
        observations: Observations | None = None,
        frontend: Frontend | None = None,
    ) -> None:
        self.settings = settings
        self.frontend = frontend
        self.paths = settings.paths
        self.registry = registry or NodeRegistry()
        self.observations = observations or Observations()
        self.hub = WebSocketHub()
        self.queue = PromptQueue(on_change=self.queue_updated)
        self.validator = PromptValidator(self.registry, self.paths)
        self.executor = PromptExecutor(
            settings, self.registry, self.hub, on_node_start=self.observations.add_execution
        )
        self.worker = PromptWorker(self.queue, self.executor, self.hub)
        self.number = 0

    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.queue.tasks_remaining()}}

    def queue_updated(self) -> None:
        self.hub.send_sync("status", {"status": self.queue_info()})

    # -- app ------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        middlewares: list[Any] = [self._record_middleware]
        if self.frontend is not None:
            from .frontend import cache_control

            middlewares.append(cache_control)
        if self.settings.enable_cors_header:
            middlewares.append(self._cors_middleware)
        else:
            middlewares.append(self._origin_middleware)
        app = web.Application(client_max_size=self.settings.max_upload_size_bytes, middlewares=middlewares)
        routes = self._routes()
        if self.frontend is not None:
            self.frontend.add_routes(routes, self)  # imports the custom nodes onto ``routes``
        api_routes = web.RouteTableDef()
        for route in routes:
            if isinstance(route, web.RouteDef):
                api_routes.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
        app.add_routes(api_routes)
        app.add_routes(routes)
        app.add_subapp("/internal", self._internal_app())
        if self.frontend is not None:
            self.frontend.add_static_routes(app)
        app.cleanup_ctx.append(self._background_tasks)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _background_tasks(self, app: web.Application) -> AsyncIterator[None]:
        publisher = asyncio.create_task(self.hub.publish_loop(), name="standin-publisher")
        worker = asyncio.create_task(self.worker.run(), name="standin-prompt-worker")
        yield
        for task in (worker, publisher):
            task.cancel()
        for task in (worker, publisher):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.hub.close_all()

    @web.middleware
    async def _record_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body and not request.content_type.startswith(
            ("multipart/", "application/x-www-form-urlencoded")
        ):
            raw = await request.read()
            with contextlib.suppress(ValueError):
                body = json.loads(raw) if raw else None
        self.observations.add_request(
            RecordedRequest(request.method, request.path, body, dict(request.query))
        )
        return await handler(request)

    @web.middleware
    async def _origin_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if _origin_mismatch(request):
            log.warning(
                "WARNING: request with non matching host and origin %s != %s, returning 403",
                request.headers.get("Host"),
                request.headers.get("Origin"),
            )
            return web.Response(status=403)
        if request.method == "OPTIONS":
            return web.Response()
        return await handler(request)

    @web.middleware
    async def _cors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = web.Response() if request.method == "OPTIONS" else await handler(request)
        response.headers["Access-Control-Allow-Origin"] = self.settings.enable_cors_header or "*"
        response.headers["Access-Control-Allow-Methods"] = "POST, GET, DELETE, PUT, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    def _internal_app(self) -> web.Application:
        routes = web.RouteTableDef()

        @routes.get("/folder_paths")
        async def folder_paths(request: web.Request) -> web.Response:
            return web.json_response(self.paths.folder_paths_json())

        @routes.get("/files/{directory_type}")
        async def files(request: web.Request) -> web.Response:
            directory_type = request.match_info["directory_type"]
            if directory_type not in ("output", "input", "temp"):
                return web.json_response({"error": "Invalid directory type"}, status=400)
            directory = self.paths.get_directory_by_type(directory_type)
            assert directory is not None
            entries = sorted(
                (p for p in directory.iterdir() if p.is_file()), key=lambda p: -p.stat().st_mtime
            )
            return web.json_response([p.name for p in entries])

        if self.frontend is not None:
            self.frontend.add_internal_routes(routes, self)
        app = web.Application()
        app.add_routes(routes)
        return app

    def _routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()
        paths = self.paths

        @routes.get("/ws")
        async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            sid = request.rel_url.query.get("clientId", "")
            if sid:
                self.hub.sockets.pop(sid, None)  # a reconnect replaces the old socket
            else:
                sid = uuid.uuid4().hex
            self.hub.sockets[sid] = _Socket(ws, request.transport)
            self.hub.metadata[sid] = {"feature_flags": {}}
            try:
                await self.hub.send("status", {"status": self.queue_info(), "sid": sid}, sid)
                if self.executor.client_id == sid and self.executor.last_node_id is not None:
                    await self.hub.send("executing", {"node": self.executor.last_node_id}, sid)
                first_message = True
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.ERROR:
                        log.warning("ws connection closed with exception %s", ws.exception())
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        try:
                            data = json.loads(msg.data)
                            if first_message and data.get("type") == "feature_flags":
                                self.hub.metadata[sid]["feature_flags"] = data.get("data", {})
                                await self.hub.send("feature_flags", self._features(), sid)
                            first_message = False
                        except json.JSONDecodeError:
                            log.warning("Invalid JSON received from client %s: %s", sid, msg.data)
                        except Exception as e:
                            log.error("Error processing WebSocket message: %s", e)
            finally:
                # Like ComfyUI: this also drops a newer socket that reused the same clientId.
                self.hub.sockets.pop(sid, None)
                self.hub.metadata.pop(sid, None)
            return ws

        if self.frontend is None:  # else the frontend's index.html (frontend.py)

            @routes.get("/")
            async def root(request: web.Request) -> web.Response:
                return web.Response(
                    text="<!doctype html><title>ComfyUI</title><p>ComfyUI stand-in (no frontend).</p>",
                    content_type="text/html",
                )

        @routes.get("/embeddings")
        async def embeddings(request: web.Request) -> web.Response:
            names = paths.get_filename_list("embeddings")
            return web.json_response([os.path.splitext(n)[0] for n in names])  # noqa: PTH122

        @routes.get("/models")
        async def models(request: web.Request) -> web.Response:
            return web.json_response(list(paths.folders))

        @routes.get("/models/{folder}")
        async def models_folder(request: web.Request) -> web.Response:
            folder = request.match_info["folder"]
            if folder not in paths.folders:
                return web.Response(status=404)
            return web.json_response(paths.get_filename_list(folder))

        if self.frontend is None:  # else core and custom node extensions (frontend.py)

            @routes.get("/extensions")
            async def extensions(request: web.Request) -> web.Response:
                return web.json_response([])

        @routes.post("/upload/image")
        async def upload_image(request: web.Request) -> web.Response:
            return self._image_upload(await request.post())

        @routes.post("/upload/mask")
        async def upload_mask(request: web.Request) -> web.Response:
            post = await request.post()
            return self._image_upload(post, self._mask_saver(post))

        @routes.get("/view")
        async def view(request: web.Request) -> web.StreamResponse:
            return self._view(request)

        @routes.get("/view_metadata/{folder_name}")
        async def view_metadata(request: web.Request) -> web.Response:
            filename = request.rel_url.query.get("filename")
            if filename is None or not filename.endswith(".safetensors"):
                return web.Response(status=404)
            path = paths.get_full_path(request.match_info["folder_name"], filename)
            if path is None:
                return web.Response(status=404)
            try:
                with path.open("rb") as f:
                    (length,) = struct.unpack("<Q", f.read(8))
                    header = json.loads(f.read(length)) if length <= 1024 * 1024 else None
            except (OSError, ValueError, struct.error):
                header = None
            if not isinstance(header, dict) or "__metadata__" not in header:
                return web.Response(status=404)
            return web.json_response(header["__metadata__"])

        @routes.get("/system_stats")
        async def system_stats(request: web.Request) -> web.Response:
            return web.json_response(self.system_stats())

        @routes.get("/features")
        async def features(request: web.Request) -> web.Response:
            return web.json_response(self._features())

        @routes.get("/prompt")
        async def get_prompt(request: web.Request) -> web.Response:
            return web.json_response(self.queue_info())

        @routes.get("/object_info")
        async def object_info(request: web.Request) -> web.Response:
            return web.json_response(self.registry.object_info(paths))

        @routes.get("/object_info/{node_class}")
        async def object_info_node(request: web.Request) -> web.Response:
            name = request.match_info["node_class"]
            cls = self.registry.get(name)
            return web.json_response({} if cls is None else {name: cls.object_info(paths)})

        @routes.get("/history")
        async def get_history(request: web.Request) -> web.Response:
            max_items = request.rel_url.query.get("max_items")
            offset = request.rel_url.query.get("offset")
            return web.json_response(
                self.queue.get_history(
                    max_items=int(max_items) if max_items is not None else None,
                    offset=int(offset) if offset is not None else -1,
                )
            )

        @routes.get("/history/{prompt_id}")
        async def get_history_item(request: web.Request) -> web.Response:
            return web.json_response(self.queue.get_history(request.match_info["prompt_id"]))

        @routes.get("/queue")
        async def get_queue(request: web.Request) -> web.Response:
            running, pending = self.queue.current_queue()
            return web.json_response({"queue_running": running, "queue_pending": pending})

        @routes.post("/prompt")
        async def post_prompt(request: web.Request) -> web.Response:
            return await self._post_prompt(request)

        @routes.post("/queue")
        async def post_queue(request: web.Request) -> web.Response:
            data = await request.json()
            if data.get("clear"):
                self.queue.wipe_queue()
            for prompt_id in data.get("delete", []) if "delete" in data else []:
                self.queue.delete_queue_item(_has_prompt_id(prompt_id))
            return web.Response(status=200)

        @routes.post("/interrupt")
        async def post_interrupt(request: web.Request) -> web.Response:
            try:
                data = await request.json()
            except json.JSONDecodeError:
                data = {}
            prompt_id = data.get("prompt_id")
            if prompt_id:
                running, _ = self.queue.current_queue()
                if any(item[1] == prompt_id for item in running):
                    log.info("Interrupting prompt %s", prompt_id)
                    self.executor.interrupt.set()
                else:
                    log.info("Prompt %s is not currently running, skipping interrupt", prompt_id)
            else:
                log.info("Global interrupt (no prompt_id specified)")
                self.executor.interrupt.set()
            return web.Response(status=200)

        @routes.post("/free")
        async def post_free(request: web.Request) -> web.Response:
            data = await request.json()
            unload_models = data.get("unload_models", False)
            free_memory = data.get("free_memory", False)
            if unload_models:
                self.queue.set_flag("unload_models", unload_models)
            if free_memory:
                self.queue.set_flag("free_memory", free_memory)
            return web.Response(status=200)

        @routes.post("/history")
        async def post_history(request: web.Request) -> web.Response:
            data = await request.json()
            if data.get("clear"):
                self.queue.wipe_history()
            for prompt_id in data.get("delete", []) if "delete" in data else []:
                self.queue.delete_history_item(prompt_id)
            return web.Response(status=200)

        return routes

    # -- route bodies ---------------------------------------------------------------------

    def _features(self) -> dict[str, Any]:
        return {"supports_preview_metadata": True, "max_upload_size": self.settings.max_upload_size_bytes}

    def system_stats(self) -> dict[str, Any]:
        ram_total, ram_free = _memory()
        if self.settings.cpu:
            device = {
                "name": "cpu",
                "type": "cpu",
                "index": None,
                "vram_total": ram_total,
                "vram_free": ram_free,
                "torch_vram_total": ram_total,
                "torch_vram_free": ram_free,
            }
        else:
            device = {
                "name": FAKE_GPU_NAME,
                "type": "cuda",
                "index": 0,
                "vram_total": FAKE_VRAM_TOTAL,
                "vram_free": FAKE_VRAM_TOTAL - 512 * 1024**2,
                "torch_vram_total": 0,
                "torch_vram_free": 0,
            }
        return {
            "system": {
                "os": os.name,
                "ram_total": ram_total,
                "ram_free": ram_free,
                "comfyui_version": COMFYUI_VERSION,
                "required_frontend_version": FRONTEND_VERSION,
                "installed_templates_version": TEMPLATES_VERSION,
                "required_templates_version": TEMPLATES_VERSION,
                "python_version": sys.version,
                "pytorch_version": PYTORCH_VERSION,
                "embedded_python": False,
                "argv": list(self.settings.argv),
            },
            "devices": [device],
        }

    async def _post_prompt(self, request: web.Request) -> web.Response:
        log.info("got prompt")
        data = await request.json()
        if "number" in data:
            number: float | int = float(data["number"])
        else:
            number = self.number
            if "front" in data and data["front"]:  # noqa: RUF019 - also valid for a JSON list body
                number = -number
            self.number += 1

        if "prompt" not in data:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return web.json_response({"error": error, "node_errors": {}}, status=400)

        prompt = data["prompt"]
        prompt_id = str(data.get("prompt_id", uuid.uuid4()))
        partial = data.get("partial_execution_targets")
        result = self.validator.validate_prompt(prompt, partial)
        extra_data = data.get("extra_data", {})
        if "client_id" in data:
            extra_data["client_id"] = data["client_id"]
        if result.ok:
            self.queue.put((number, prompt_id, prompt, extra_data, result.good_outputs))
            return web.json_response(
                {"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors}
            )
        log.warning("invalid prompt: %s", result.error)
        return web.json_response({"error": result.error, "node_errors": result.node_errors}, status=400)

    def _upload_dir(self, type_name: str | None) -> tuple[Path, str]:
        name = type_name or "input"
        directory = self.paths.get_directory_by_type(name)
        if directory is None:
            # ComfyUI fails with UnboundLocalError here, i.e. a 500.
            raise web.HTTPInternalServerError(text=f"unknown upload type {name!r}")
        return directory, name

    def _image_upload(self, post: Any, save: Callable[[Any, str], None] | None = None) -> web.Response:
        image = post.get("image")
        overwrite = post.get("overwrite")
        upload_dir, upload_type = self._upload_dir(post.get("type"))
        if not image or not getattr(image, "file", None):
            return web.Response(status=400)
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = post.get("subfolder", "")
        base = str(upload_dir)
        full_folder = os.path.join(base, os.path.normpath(subfolder))  # noqa: PTH118
        filepath = os.path.abspath(os.path.join(full_folder, filename))  # noqa: PTH118
        if os.path.commonpath((base, filepath)) != base:
            return web.Response(status=400)
        Path(full_folder).mkdir(parents=True, exist_ok=True)
        stem, ext = os.path.splitext(filename)  # noqa: PTH122
        content = image.file.read()
        image.file.seek(0)
        duplicate = False
        if overwrite not in ("true", "1"):
            index = 1
            while Path(filepath).exists():
                if Path(filepath).read_bytes() == content:
                    duplicate = True
                    break
                filename = f"{stem} ({index}){ext}"
                filepath = os.path.join(full_folder, filename)  # noqa: PTH118
                index += 1
        if not duplicate:
            if save is not None:
                save(image, filepath)
            else:
                Path(filepath).write_bytes(content)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": upload_type})

    def _mask_saver(self, post: Any) -> Callable[[Any, str], None]:
        def save(image: Any, filepath: str) -> None:
            ref = json.loads(post.get("original_ref"))
            filename, output_dir = self.paths.annotated_filepath(ref["filename"])
            if not filename or filename[0] == "/" or ".." in filename:
                return
            if output_dir is None:
                output_dir = self.paths.get_directory_by_type(ref.get("type", "output"))
            if output_dir is None:
                return
            if ref.get("subfolder", ""):
                full = os.path.join(str(output_dir), ref["subfolder"])  # noqa: PTH118
                if os.path.commonpath((os.path.abspath(full), str(output_dir))) != str(output_dir):
                    return
                output_dir = Path(full)
            original_path = Path(output_dir) / filename
            if not original_path.is_file():
                return
            with Image.open(original_path) as original:
                metadata = PngInfo()
                for key, value in getattr(original, "text", {}).items():
                    metadata.add_text(key, value)
                rgba = original.convert("RGBA")
                mask = Image.open(image.file).convert("RGBA")
                rgba.putalpha(mask.getchannel("A"))
                rgba.save(filepath, compress_level=4, pnginfo=metadata)

        return save

    def _view(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        if "filename" not in query:
            return web.Response(status=404)
        filename, output_dir = self.paths.annotated_filepath(query["filename"])
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if output_dir is None:
            output_dir = self.paths.get_directory_by_type(query.get("type", "output"))
        if output_dir is None:
            return web.Response(status=400)
        directory = str(output_dir)
        if "subfolder" in query:
            full = os.path.join(directory, query["subfolder"])  # noqa: PTH118
            if os.path.commonpath((os.path.abspath(full), directory)) != directory:
                return web.Response(status=403)
            directory = full
        filename = os.path.basename(filename)  # noqa: PTH119
        file = Path(directory) / filename
        if not file.is_file():
            return web.Response(status=404)
        disposition = {"Content-Disposition": f'filename="{filename}"'}
        if "preview" in query:
            with Image.open(file) as img:
                preview_info = query["preview"].split(";")
                image_format = preview_info[0]
                if image_format not in ("webp", "jpeg") or "a" in query.get("channel", ""):
                    image_format = "webp"
                quality = int(preview_info[-1]) if preview_info[-1].isdigit() else 90
                out = img.convert("RGB") if image_format == "jpeg" or query.get("channel") == "rgb" else img
                buffer = BytesIO()
                out.save(buffer, format=image_format, quality=quality)
            return web.Response(
                body=buffer.getvalue(), content_type=f"image/{image_format}", headers=disposition
            )
        channel = query.get("channel", "rgba")
        if channel in ("rgb", "a"):
            with Image.open(file) as img:
                if channel == "rgb":
                    result = img.convert("RGB")
                else:
                    alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
                    result = Image.new("RGBA", img.size)
                    result.putalpha(alpha)
                buffer = BytesIO()
                result.save(buffer, format="PNG")
            return web.Response(body=buffer.getvalue(), content_type="image/png", headers=disposition)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type in {
            "text/html",
            "text/html-sandboxed",
            "application/xhtml+xml",
            "text/javascript",
            "text/css",
        }:
            content_type = "application/octet-stream"
        return web.FileResponse(file, headers={**disposition, "Content-Type": content_type})


#: Where :func:`create_app` stores the :class:`StandinServer` on the application.
STANDIN_KEY = web.AppKey("standin", StandinServer)


def create_app(
    settings: StandinSettings,
    registry: NodeRegistry | None = None,
    observations: Observations | None = None,
    frontend: Frontend | None = None,
) -> web.Application:
    """Build the stand-in application; ``app[STANDIN_KEY]`` is its :class:`StandinServer`.

    ``frontend`` (opt-in) adds what a browser needs: see :mod:`.frontend`.
    """
    server = StandinServer(settings, registry, observations, frontend)
    app = server.make_app()
    app[STANDIN_KEY] = server
    return app
