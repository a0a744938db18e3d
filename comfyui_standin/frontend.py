"""Opt-in: the stand-in as a browser sees ComfyUI 0.3.64 (the real frontend, custom nodes).

Off by default: without a :class:`Frontend` the stand-in keeps its stub ``GET /`` and empty
``GET /extensions``. With one (``StandinComfyUI(root, frontend=Frontend())``) it behaves like
ComfyUI's ``PromptServer`` for the frontend package (``comfyui-frontend-package``):

* ``GET /`` serves the frontend's ``index.html`` (no-cache) and ``/`` its static files (added
  last, as ComfyUI does); ``GET /extensions`` lists ``extensions/**/*.js`` of the web root and
  every ``*.js`` under each custom node's web directory, served at ``/extensions/<name>/``;
* every custom node folder in the ``custom_nodes`` search paths (``<base>/custom_nodes``) is
  imported as ComfyUI's ``nodes.load_custom_node`` does (module name from its path, ``__init__.py``
  executed), with ``server.PromptServer.instance`` and ``folder_paths`` stand-ins in ``sys.modules``
  for the duration of the import; routes it registers on ``PromptServer.instance.routes`` are the
  core route table's, so they are served at ``/path`` and ``/api/path`` like core routes;
  ``WEB_DIRECTORY`` (or ``[tool.comfy] web`` in its ``pyproject.toml``) becomes an extension dir;
* the user manager's routes (``/users``, ``/userdata``, ``/v2/userdata``, ``/userdata/{file}``
  with ``/move/{dest}``, ``/settings``, ``/settings/{id}``) on ``<user dir>/default/``, plus
  ``/i18n`` (custom nodes' ``locales/``), ``/workflow_templates``, ``/experiment/models`` and
  ``/internal/logs``, ``/internal/logs/raw``, ``PATCH /internal/logs/subscribe``;
* ``/templates/...`` from ``templates_root`` when given (ComfyUI serves the
  ``comfyui-workflow-templates`` package there; without it the route does not exist);
* ComfyUI's cache-control middleware (``no-cache`` on ``.js``/``.css``/``index*.json``).

Single-user mode only (no ``--multi-user``). Written from the behaviour of ComfyUI 0.3.64's
``server.py``, ``app/user_manager.py``, ``app/app_settings.py``, ``app/custom_node_manager.py``,
``app/model_manager.py`` and ``middleware/cache_middleware.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
import tomllib
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .server import StandinServer

log = logging.getLogger("comfyui_standin.frontend")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
EXTRA_LOCALE_FILES = ("nodeDefs.json", "commands.json", "settings.json")
EXAMPLE_WORKFLOW_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")
SETTINGS_FILE = "comfy.settings.json"
USER = "default"


def frontend_package_root() -> Path:
    """The ``static`` folder of the installed ``comfyui-frontend-package`` (a dev dependency)."""
    spec = importlib.util.find_spec("comfyui_frontend_package")
    if spec is None or spec.origin is None:
        raise RuntimeError("comfyui-frontend-package is not installed (uv sync installs the dev group)")
    root = Path(spec.origin).parent / "static"
    if not (root / "index.html").is_file():
        raise RuntimeError(f"no index.html in {root}")
    return root


@web.middleware
async def cache_control(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ComfyUI's cache headers: no-cache for scripts/styles/index json, a day for images."""
    response = await handler(request)
    name = request.path.rsplit("/", 1)[-1]
    if request.path.endswith((".js", ".css")) or (name.startswith("index") and name.endswith(".json")):
        response.headers.setdefault("Cache-Control", "no-cache")
        return response
    if not request.path.lower().endswith(IMG_EXTENSIONS):
        return response
    if response.status == 404:
        response.headers.setdefault("Cache-Control", "public, max-age=3600")
    elif response.status in (200, 201, 202, 203, 204, 205, 206, 301, 308):
        response.headers.setdefault("Cache-Control", "public, max-age=86400")
    elif response.status in (302, 303, 307):
        response.headers.setdefault("Cache-Control", "no-cache")
    return response


@dataclass
class LoadedPack:
    """One imported custom node folder."""

    name: str
    directory: Path
    module: ModuleType


class _PromptServerShim:
    """What a custom node sees as ``server.PromptServer.instance`` while it is imported."""

    instance: _PromptServerShim

    def __init__(self, server: StandinServer, routes: web.RouteTableDef) -> None:
        self._server = server
        self.routes = routes
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.supports = ["custom_nodes_from_web"]
        self.on_prompt_handlers: list[Callable[[Any], Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self.loop = asyncio.get_running_loop()

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._server.hub.send_sync, event, data, sid)
        else:
            self._server.hub.send_sync(event, data, sid)

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
        await self._server.hub.send(event, data, sid)

    def add_on_prompt_handler(self, handler: Callable[[Any], Any]) -> None:
        self.on_prompt_handlers.append(handler)


def _folder_paths_module(server: StandinServer) -> ModuleType:
    """``folder_paths`` as a custom node uses it, backed by the stand-in's paths."""
    paths = server.paths
    module = ModuleType("folder_paths")
    module.__dict__.update(
        base_path=str(paths.base_dir),
        models_dir=str(paths.models_dir),
        folder_names_and_paths={k: (list(v.paths), set(v.extensions)) for k, v in paths.folders.items()},
        get_input_directory=lambda: str(paths.input_dir),
        get_output_directory=lambda: str(paths.output_dir),
        get_temp_directory=lambda: str(paths.temp_dir),
        get_user_directory=lambda: str(paths.user_dir),
        get_directory_by_type=lambda t: (
            None if paths.get_directory_by_type(t) is None else str(paths.get_directory_by_type(t))
        ),
        get_folder_paths=paths.get_folder_paths,
        get_filename_list=paths.get_filename_list,
        get_full_path=lambda f, n: (
            None if paths.get_full_path(f, n) is None else str(paths.get_full_path(f, n))
        ),
        get_annotated_filepath=paths.get_annotated_filepath,
        exists_annotated_filepath=paths.exists_annotated_filepath,
    )
    return module


@contextlib.contextmanager
def _comfyui_modules(server: StandinServer, routes: web.RouteTableDef) -> Iterator[None]:
    """``server`` and ``folder_paths`` importable while custom nodes load; restored after."""
    server_module = ModuleType("server")
    shim = _PromptServerShim(server, routes)
    _PromptServerShim.instance = shim
    server_module.__dict__["PromptServer"] = _PromptServerShim
    added = {"server": server_module, "folder_paths": _folder_paths_module(server)}
    saved = {name: sys.modules.get(name) for name in added}
    sys.modules.update(added)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def _pyproject_web_dir(pack: Path) -> tuple[str, Path] | None:
    """``([project].name, dir)`` when ``pyproject.toml`` sets ``[tool.comfy] web``."""
    try:
        data = tomllib.loads((pack / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    web_dir = data.get("tool", {}).get("comfy", {}).get("web")
    name = data.get("project", {}).get("name")
    if isinstance(web_dir, str) and web_dir and isinstance(name, str) and (pack / web_dir).is_dir():
        return name, pack / web_dir
    return None


def load_pack(directory: Path, web_dirs: dict[str, Path]) -> LoadedPack | None:
    """Import one custom node folder like ComfyUI; a failing import is logged and skipped."""
    name = directory.name
    sys_name = str(directory).replace(".", "_x_")
    for loaded in [m for m in sys.modules if m == sys_name or m.startswith(sys_name + ".")]:
        del sys.modules[loaded]  # a restart imports the pack afresh, like a new process
    spec = importlib.util.spec_from_file_location(sys_name, directory / "__init__.py")
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[sys_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        log.exception("Cannot import %s module for custom nodes", directory)
        sys.modules.pop(sys_name, None)
        return None
    project_web = _pyproject_web_dir(directory)
    if project_web is not None:
        web_dirs[project_web[0]] = project_web[1]
    web_directory = getattr(module, "WEB_DIRECTORY", None)
    if web_directory is not None:
        web_dir = (directory / str(web_directory)).resolve()
        if web_dir.is_dir():
            web_dirs[name] = web_dir
    return LoadedPack(name, directory, module)


def _file_info(path: Path, relative_to: Path) -> dict[str, Any]:
    stat = path.stat()
    return {
        "path": path.relative_to(relative_to).as_posix(),
        "size": stat.st_size,
        "modified": stat.st_mtime,
        "created": stat.st_ctime,
    }


def _refused_overwrite(request: web.Request, target: Path) -> web.Response | None:
    """409 when ``?overwrite=false`` and ``target`` exists (ComfyUI's userdata writes)."""
    if request.query.get("overwrite", "true") == "false" and target.exists():
        return web.Response(status=409, text="File already exists")
    return None


def _written(request: web.Request, path: Path, root: Path) -> web.Response:
    """A userdata write's answer: ``path`` relative to ``root``, or its info with ``?full_info=true``."""
    if request.query.get("full_info", "false").lower() == "true":
        return web.json_response(_file_info(path, root))
    return web.json_response(os.path.relpath(path, root))


def _workflow_templates(custom_node_folders: list[str]) -> dict[str, list[str]]:
    """``GET /workflow_templates``: each pack's example workflows, by pack folder name."""
    templates: dict[str, list[str]] = {}
    for folder in custom_node_folders:
        for sub in EXAMPLE_WORKFLOW_FOLDERS:
            for file in sorted(Path(folder).glob(f"*/{sub}/*.json")):
                templates.setdefault(file.parent.parent.name, []).append(file.stem)
    return templates


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


@dataclass
class Frontend:
    """What the stand-in serves to a browser; pass it to ``StandinComfyUI(frontend=...)``.

    ``web_root`` defaults to the installed ``comfyui-frontend-package``'s static folder;
    ``templates_root`` is served at ``/templates`` when given; ``load_custom_nodes`` imports
    the folders under the ``custom_nodes`` search paths.
    """

    web_root: Path = field(default_factory=frontend_package_root)
    templates_root: Path | None = None
    load_custom_nodes: bool = True
    #: Filled when the app is built: extension name → web dir, and the imported packs.
    web_dirs: dict[str, Path] = field(default_factory=dict)
    packs: list[LoadedPack] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    # -- wiring (called by StandinServer.make_app) -----------------------------------------

    def add_routes(self, routes: web.RouteTableDef, server: StandinServer) -> None:
        """Core frontend routes, then the custom nodes (which may add their own routes)."""
        self._core_routes(routes, server)
        self._user_routes(routes, server)
        self.web_dirs.clear()
        self.packs.clear()
        if not self.load_custom_nodes:
            return
        with _comfyui_modules(server, routes):
            for folder in server.paths.get_folder_paths("custom_nodes"):
                base = Path(folder)
                if not base.is_dir():
                    continue
                for entry in sorted(base.iterdir()):
                    if entry.name == "__pycache__" or entry.name.endswith(".disabled"):
                        continue
                    if entry.is_dir() and (entry / "__init__.py").is_file():
                        pack = load_pack(entry, self.web_dirs)
                        if pack is not None:
                            self.packs.append(pack)

    def add_static_routes(self, app: web.Application) -> None:
        """Static routes, after every other route as in ComfyUI's ``add_routes``."""
        for name, directory in self.web_dirs.items():
            app.add_routes([web.static("/extensions/" + name, directory)])
        if self.templates_root is not None:
            app.add_routes([web.static("/templates", self.templates_root)])
        app.add_routes([web.static("/", self.web_root)])
        app.on_cleanup.append(self._cancel_leftover_tasks)

    @staticmethod
    async def _cancel_leftover_tasks(app: web.Application) -> None:
        """Tasks custom nodes started (a job still followed): cancelled, as a process exit would.

        Runs after the stand-in's own background tasks ended, so only the custom nodes' remain.
        """
        current = asyncio.current_task()
        leftover = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)

    def add_internal_routes(self, routes: web.RouteTableDef, server: StandinServer) -> None:
        """``/internal/logs*`` (the frontend's terminal and log panels)."""

        @routes.get("/logs")
        async def logs(request: web.Request) -> web.Response:
            return web.json_response("".join(f"{e['t']} - {e['m']}" for e in self._log_entries()))

        @routes.get("/logs/raw")
        async def logs_raw(request: web.Request) -> web.Response:
            size = shutil.get_terminal_size((80, 24))
            return web.json_response(
                {"entries": self._log_entries(), "size": {"cols": size.columns, "rows": size.lines}}
            )

        @routes.patch("/logs/subscribe")
        async def logs_subscribe(request: web.Request) -> web.Response:
            data = await request.json()
            _ = (data["clientId"], data["enabled"])  # KeyError → 500, as in ComfyUI
            return web.Response(status=200)

    def _log_entries(self) -> list[dict[str, str]]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started))
        return [{"t": stamp, "m": "ComfyUI stand-in started\n"}]

    # -- routes ----------------------------------------------------------------------------

    def _core_routes(self, routes: web.RouteTableDef, server: StandinServer) -> None:
        @routes.get("/")
        async def root(request: web.Request) -> web.FileResponse:
            response = web.FileResponse(self.web_root / "index.html")
            response.headers["Cache-Control"] = "no-cache"
            response.headers["Pragma"] = "no-cache"
            response.headers["Expires"] = "0"
            return response

        @routes.get("/extensions")
        async def extensions(request: web.Request) -> web.Response:
            found = [
                "/" + p.relative_to(self.web_root).as_posix()
                for p in sorted((self.web_root / "extensions").rglob("*.js"))
            ]
            for name, directory in self.web_dirs.items():
                found.extend(
                    f"/extensions/{urllib.parse.quote(name)}/{p.relative_to(directory).as_posix()}"
                    for p in sorted(directory.rglob("*.js"))
                )
            return web.json_response(found)

        @routes.get("/i18n")
        async def i18n(request: web.Request) -> web.Response:
            return web.json_response(self._translations(server))

        @routes.get("/workflow_templates")
        async def workflow_templates(request: web.Request) -> web.Response:
            return web.json_response(_workflow_templates(server.paths.get_folder_paths("custom_nodes")))

        @routes.get("/experiment/models")
        async def experiment_models(request: web.Request) -> web.Response:
            return web.json_response(
                [
                    {"name": key, "folders": server.paths.get_folder_paths(key)}
                    for key in server.paths.folders
                    if key not in ("configs", "custom_nodes")
                ]
            )

    def _translations(self, server: StandinServer) -> dict[str, Any]:
        translations: dict[str, Any] = {}
        for folder in server.paths.get_folder_paths("custom_nodes"):
            for locales in sorted(Path(folder).glob("*/locales")):
                for lang_dir in sorted(p for p in locales.iterdir() if p.is_dir()):
                    entry = self._read_json(lang_dir / "main.json")
                    for extra in EXTRA_LOCALE_FILES:
                        data = self._read_json(lang_dir / extra)
                        if data:
                            entry[extra.split(".")[0]] = data
                    if entry:
                        translations[lang_dir.name] = _merge(translations.get(lang_dir.name, {}), entry)
        return translations

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _user_routes(self, routes: web.RouteTableDef, server: StandinServer) -> None:
        users = {USER: USER}

        def user_root() -> Path:
            return Path(os.path.abspath(server.paths.user_dir / USER))

        def user_path(file: str | None, *, create_dir: bool = True) -> Path | None:
            root = user_root()
            path = root
            if file is not None:
                if "%" in file:
                    file = urllib.parse.unquote(file)
                path = Path(os.path.abspath(root / file))
                if os.path.commonpath((root, path)) != str(root):
                    return None
            if create_dir:
                path.parent.mkdir(parents=True, exist_ok=True)
            return path

        def settings_file() -> Path:
            path = user_path(SETTINGS_FILE)
            assert path is not None
            return path

        def read_settings() -> dict[str, Any]:
            file = settings_file()
            if not file.is_file():
                return {}
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except ValueError:
                log.error("The user settings file is corrupted: %s", file)
                return {}
            return data if isinstance(data, dict) else {}

        def write_settings(settings: dict[str, Any]) -> None:
            settings_file().write_text(json.dumps(settings, indent=4), encoding="utf-8")

        def data_path(
            request: web.Request, param: str = "file", check_exists: bool = False
        ) -> Path | web.Response:
            file = request.match_info.get(param)
            if not file:
                return web.Response(status=400)
            path = user_path(file)
            if path is None:
                return web.Response(status=403)
            if check_exists and not path.exists():
                return web.Response(status=404)
            return path

        @routes.get("/settings")
        async def get_settings(request: web.Request) -> web.Response:
            return web.json_response(read_settings())

        @routes.get("/settings/{id}")
        async def get_setting(request: web.Request) -> web.Response:
            return web.json_response(read_settings().get(request.match_info["id"]))

        @routes.post("/settings")
        async def post_settings(request: web.Request) -> web.Response:
            write_settings({**read_settings(), **(await request.json())})
            return web.Response(status=200)

        @routes.post("/settings/{id}")
        async def post_setting(request: web.Request) -> web.Response:
            settings = read_settings()
            settings[request.match_info["id"]] = await request.json()
            write_settings(settings)
            return web.Response(status=200)

        @routes.get("/users")
        async def get_users(request: web.Request) -> web.Response:
            return web.json_response({"storage": "server", "migrated": user_root().exists()})

        @routes.post("/users")
        async def post_users(request: web.Request) -> web.Response:
            username = (await request.json())["username"]
            if username in users.values():
                return web.json_response({"error": "Duplicate username."}, status=400)
            user_id = f"{username}_{os.urandom(4).hex()}"
            users[user_id] = username
            return web.json_response(user_id)

        @routes.get("/userdata")
        async def list_userdata(request: web.Request) -> web.Response:
            query = request.rel_url.query
            directory = query.get("dir", "")
            if not directory:
                return web.Response(status=400, text="Directory not provided")
            path = user_path(directory)
            if path is None:
                return web.Response(status=403, text="Invalid directory")
            if not path.exists():
                return web.Response(status=404, text="Directory not found")
            recurse = query.get("recurse", "").lower() == "true"
            full_info = query.get("full_info", "").lower() == "true"
            split = query.get("split", "").lower() == "true"
            files = sorted(p for p in (path.rglob("*") if recurse else path.glob("*")) if p.is_file())
            results: list[Any] = []
            for file in files:
                if full_info:
                    results.append(_file_info(file, path))
                    continue
                relative = file.relative_to(path).as_posix()
                results.append([relative, *relative.split("/")] if split else relative)
            return web.json_response(results)

        @routes.get("/v2/userdata")
        async def list_userdata_v2(request: web.Request) -> web.Response:
            relative = urllib.parse.unquote(request.rel_url.query.get("path", ""))
            base = user_root()
            target = user_path(relative, create_dir=False) if relative else base
            if target is None:
                return web.Response(status=400, text="Invalid path requested")
            if not target.exists():
                if target == base:
                    return web.json_response([])
                return web.Response(status=404, text="Requested path not found")
            if not target.is_dir():
                return web.Response(status=400, text="Requested path is not a directory")
            entries: list[dict[str, Any]] = []
            for item in target.rglob("*"):
                rel = item.relative_to(base).as_posix()
                if item.is_dir():
                    entries.append({"name": item.name, "path": rel, "type": "directory"})
                else:
                    stat = item.stat()
                    entries.append(
                        {
                            "name": item.name,
                            "path": rel,
                            "type": "file",
                            "size": stat.st_size,
                            "modified": stat.st_mtime,
                        }
                    )
            entries.sort(key=lambda e: (e["type"] != "directory", e["name"].lower()))
            return web.json_response(entries)

        @routes.get("/userdata/{file}")
        async def get_userdata(request: web.Request) -> web.StreamResponse:
            path = data_path(request, check_exists=True)
            return path if isinstance(path, web.Response) else web.FileResponse(path)

        @routes.post("/userdata/{file}")
        async def post_userdata(request: web.Request) -> web.Response:
            path = data_path(request)
            if isinstance(path, web.Response):
                return path
            if refused := _refused_overwrite(request, path):
                return refused
            try:
                path.write_bytes(await request.read())
            except OSError:
                return web.Response(
                    status=400, reason='Invalid filename. Please avoid special characters like :\\/*?"<>|'
                )
            return _written(request, path, user_root())

        @routes.delete("/userdata/{file}")
        async def delete_userdata(request: web.Request) -> web.Response:
            path = data_path(request, check_exists=True)
            if isinstance(path, web.Response):
                return path
            path.unlink()
            return web.Response(status=204)

        @routes.post("/userdata/{file}/move/{dest}")
        async def move_userdata(request: web.Request) -> web.Response:
            source = data_path(request, check_exists=True)
            if isinstance(source, web.Response):
                return source
            dest = data_path(request, param="dest")
            if isinstance(dest, web.Response):
                return dest
            if refused := _refused_overwrite(request, dest):
                return refused
            shutil.move(source, dest)
            return _written(request, dest, user_root())
