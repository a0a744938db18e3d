"""The "Queue on RunPod" button clicked in a real browser: ComfyUI's frontend in headless Chromium.

The local ComfyUI is the stand-in serving the real frontend (``comfyui-frontend-package``
1.32.4, the version the image lock pins) with ``custom_node/`` copied into its
``custom_nodes/comfy-runpod`` and loaded as ComfyUI loads it (``comfyui_standin/frontend.py``):
the extension's JS comes from ``GET /extensions`` and ``/extensions/comfy-runpod/``, its routes
are mounted on the app at ``/runpod/...`` and ``/api/runpod/...``. The endpoint is the local
RunPod endpoint whose worker runs the real handler against a second stand-in (the "volume" has
the default workflow's checkpoint). The page runs the frontend's default workflow.

Chromium is Debian's ``/usr/bin/chromium`` (``.ci/run`` installs it); without it the tests
skip locally and fail in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Playwright, Route, sync_playwright

from comfyui_standin import Frontend, StandinComfyUI
from local_endpoint.endpoint import LocalEndpoint
from tests.conftest import attach_env
from tests.local_endpoint_fixtures import running_endpoint

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PACK = "comfy-runpod"
COMMAND_ID = "ComfyRunPod.QueueOnRunPod"
SETTING_ID = "ComfyRunPod.RunOnRunPod"
#: The checkpoint of the frontend's default workflow: on both machines.
CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"
#: A checkpoint only the local ComfyUI has: the worker refuses the workflow.
LOCAL_ONLY = "only-on-this-machine.safetensors"
TIMEOUT_MS = 30_000

#: What frontend 1.32.4 requested while loading from real ComfyUI 0.3.64 with this extension
#: installed (recorded with Chromium), and the status it got; /assets/ and /fonts/ left out.
REAL_LOAD = {
    "/": 200,
    "/materialdesignicons.min.css": 200,
    "/api/userdata/user.css": 404,
    "/user.css": 404,
    "/api/system_stats": 200,
    "/api/users": 200,
    "/api/i18n": 200,
    "/api/settings": 200,
    "/api/userdata": 404,  # ?dir=workflows: no saved workflows yet
    "/api/extensions": 200,
    "/api/global_subgraphs": 404,  # a newer ComfyUI's route
    "/api/userdata/comfy.templates.json": 404,
    f"/extensions/{PACK}/runpod.js": 200,
    f"/extensions/{PACK}/runpod_logic.js": 200,
    "/scripts/api.js": 200,
    "/scripts/app.js": 200,
    "/api/object_info": 200,
    "/api/queue": 200,
    "/api/history": 200,
    "/api/experiment/models": 200,
}
#: Those always requested before the action bar shows.
FIRST_LOAD = {
    path: REAL_LOAD[path]
    for path in (
        "/",
        "/api/system_stats",
        "/api/users",
        "/api/settings",
        "/api/extensions",
        "/api/object_info",
        f"/extensions/{PACK}/runpod.js",
        f"/extensions/{PACK}/runpod_logic.js",
    )
}
STATIC = ("/assets/", "/fonts/", "/cursor/")


def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def worker_comfy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinComfyUI]:
    """The ComfyUI the RunPod worker supervises (the network volume has the checkpoint)."""
    root = tmp_path_factory.mktemp("worker") / "ComfyUI"
    with StandinComfyUI(root, models={"checkpoints": [CHECKPOINT]}) as server:
        yield server


@pytest.fixture(scope="module")
def runpod_endpoint(worker_comfy: StandinComfyUI) -> Iterator[LocalEndpoint]:
    with running_endpoint(workers=1, worker_env=attach_env(worker_comfy)) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def local_comfy(
    tmp_path_factory: pytest.TempPathFactory, runpod_endpoint: LocalEndpoint
) -> Iterator[StandinComfyUI]:
    """The user's ComfyUI: the real frontend, and the extension installed as ``invoke setup`` does."""
    base = tmp_path_factory.mktemp("local")
    templates = base / "workflow_templates"  # an empty comfyui-workflow-templates package
    templates.mkdir()
    (templates / "index.json").write_text("[]")
    server = StandinComfyUI(
        base / "ComfyUI",
        models={"checkpoints": [CHECKPOINT, LOCAL_ONLY]},
        frontend=Frontend(templates_root=templates),
    )
    shutil.copytree(
        REPO / "custom_node",
        server.root / "custom_nodes" / PACK,
        ignore=shutil.ignore_patterns("__pycache__", "node_modules", "js_tests"),
    )
    user = server.root / "user"
    (user / "default").mkdir(parents=True)
    (user / "comfy-runpod.json").write_text(
        json.dumps({"endpoint_url": runpod_endpoint.url, "api_key": runpod_endpoint.api_key, "timeout_s": 60})
    )
    # A returning user: no first-start template browser over the canvas.
    (user / "default" / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    with server:
        yield server


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    chromium()
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(chromium()), args=CHROMIUM_ARGS, headless=True)
    try:
        yield browser
    finally:
        browser.close()


class LoadedPage:
    """A page with the ComfyUI UI loaded, and what the browser saw while loading it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.responses: dict[str, int] = {}
        self.load_toasts: list[str] = []
        self.load_responses: dict[str, int] = {}

    def on_console(self, message: ConsoleMessage) -> None:
        # Resource 404s are logged as console errors; they are checked as responses instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)


@pytest.fixture(scope="module")
def ui(browser: Browser, local_comfy: StandinComfyUI) -> Iterator[LoadedPage]:
    """One page load for the module (a load costs seconds); each test finds its own job panel."""
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    page = context.new_page()
    loaded = LoadedPage(page)
    origin = local_comfy.url

    def only_local(route: Route) -> None:  # no request leaves the machine (api.comfy.org, ...)
        if route.request.url.startswith(origin):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", only_local)
    page.on("console", loaded.on_console)
    page.on("pageerror", lambda error: loaded.errors.append(f"uncaught: {error}"))
    page.on(
        "response", lambda r: loaded.responses.__setitem__(r.url.removeprefix(origin).split("?")[0], r.status)
    )
    try:
        page.goto(origin)
        button(page).wait_for(state="visible", timeout=TIMEOUT_MS)
        page.wait_for_function("() => window.app?.graph?.nodes?.length > 0", timeout=TIMEOUT_MS)
        loaded.load_toasts = [text.strip() for text in page.locator(".p-toast-message").all_inner_texts()]
        loaded.load_responses = dict(loaded.responses)
        yield loaded
    finally:
        context.close()


def button(page: Page) -> Locator:
    return page.locator("button", has_text="Queue on RunPod")


def close_toasts(page: Page) -> None:
    """Clear the toasts at the top right: they cover the action bar (a user would close them)."""
    page.evaluate("() => window.app.extensionManager.toast.removeAll()")
    page.wait_for_function("() => !document.querySelector('.p-toast-message')", timeout=TIMEOUT_MS)


def set_checkpoint(page: Page, name: str) -> None:
    page.evaluate(
        """(name) => {
            const loader = window.app.graph.nodes.find((n) => n.type === "CheckpointLoaderSimple");
            loader.widgets.find((w) => w.name === "ckpt_name").value = name;
        }""",
        name,
    )


def click_and_get_panel(page: Page) -> tuple[Locator, str]:
    """Click the button; the new job panel of the overlay and the job id its title shows."""
    if page.locator(".p-toast-message").count():
        close_toasts(page)
    before = page.locator(".runpod-job").count()
    button(page).click()
    panel = page.locator(".runpod-job").nth(before)
    title = panel.locator("header span").first
    title.filter(has_text=re.compile(r"^RunPod \S+$")).wait_for(timeout=TIMEOUT_MS)
    return panel, title.inner_text().removeprefix("RunPod ")


def test_the_button_command_and_setting_are_registered(ui: LoadedPage) -> None:
    page = ui.page
    assert ui.responses.get(f"/extensions/{PACK}/runpod.js") == 200, ui.responses
    extensions = page.evaluate("() => fetch('/extensions').then(r => r.json())")
    assert f"/extensions/{PACK}/runpod.js" in extensions
    assert f"/extensions/{PACK}/runpod_logic.js" in extensions

    # The action-bar button, left of Run.
    queue_box = button(page).bounding_box()
    run_box = page.get_by_role("button", name="Run", exact=True).bounding_box()
    assert queue_box is not None and run_box is not None
    assert queue_box["x"] + queue_box["width"] <= run_box["x"]
    assert abs(queue_box["y"] + queue_box["height"] / 2 - (run_box["y"] + run_box["height"] / 2)) < 20

    registered = page.evaluate(
        """([commandId, settingId]) => {
            const m = window.app.extensionManager;
            const command = m.command.commands.find((c) => c.id === commandId);
            const setting = m.setting.settings[settingId];
            return {
              command: command && {label: command.label, source: command.source ?? null},
              setting: setting && {type: setting.type, defaultValue: setting.defaultValue},
              value: m.setting.get(settingId),
            };
        }""",
        [COMMAND_ID, SETTING_ID],
    )
    assert registered["command"]["label"] == "Queue on RunPod", registered
    assert registered["setting"] == {"type": "boolean", "defaultValue": False}, registered
    assert registered["value"] is False

    # The extension's routes answer under ComfyUI's /api prefix, as api.fetchApi calls them.
    config = page.evaluate("() => fetch('/api/runpod/config').then((r) => r.json())")
    assert config["configured"] is True and config["has_api_key"] is True, config


def test_the_page_loads_as_from_real_comfyui_without_errors(ui: LoadedPage) -> None:
    """Every request of the page load is answered as real ComfyUI answered it; no error shows."""
    requested = {path: status for path, status in ui.load_responses.items() if not path.startswith(STATIC)}
    assert {path: requested.get(path) for path in FIRST_LOAD} == FIRST_LOAD
    assert {path: REAL_LOAD[path] for path in requested if path in REAL_LOAD} == requested, requested
    assert ui.load_toasts == []  # e.g. a keybinding that clashes with one of the frontend's
    assert ui.errors == []


def test_clicking_the_button_runs_the_workflow_on_runpod_and_shows_the_image(
    ui: LoadedPage, local_comfy: StandinComfyUI, worker_comfy: StandinComfyUI
) -> None:
    page = ui.page
    set_checkpoint(page, CHECKPOINT)  # the default workflow's
    prompts_before = len([r for r in worker_comfy.requests if r[:2] == ("POST", "/prompt")])

    panel, job_id = click_and_get_panel(page)

    panel.locator(".runpod-status").filter(has_text=re.compile(r"^Done$")).wait_for(timeout=TIMEOUT_MS)
    image = panel.locator(".runpod-images img")
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0",
        arg=image.element_handle(timeout=TIMEOUT_MS),
        timeout=TIMEOUT_MS,
        polling=50,
    )
    size = image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    assert size == [512, 512]  # the default workflow's 512x512 latent, decoded
    src = str(image.get_attribute("src"))
    assert src.startswith("/api/view?") and f"subfolder=runpod%2F{job_id}" in src, src

    # The image shown is the file saved under the local output folder's runpod/<job id>/.
    saved = sorted((local_comfy.output_dir / "runpod" / job_id).glob("*.png"))
    assert len(saved) == 1, saved
    assert f"runpod/{job_id}/{saved[0].name}" in image.locator("xpath=..").inner_text()
    shown = page.evaluate("(src) => fetch(src).then((r) => r.arrayBuffer()).then((b) => b.byteLength)", src)
    assert shown == saved[0].stat().st_size
    with Image.open(saved[0]) as png:
        assert png.size == (512, 512)

    # The workflow ran on the worker's ComfyUI, not on the local one.
    assert len([r for r in worker_comfy.requests if r[:2] == ("POST", "/prompt")]) == prompts_before + 1
    assert not [r for r in local_comfy.requests if r[:2] in {("POST", "/prompt"), ("POST", "/api/prompt")}]


def test_a_failed_job_shows_the_error_code_and_message(ui: LoadedPage) -> None:
    page = ui.page
    set_checkpoint(page, LOCAL_ONLY)
    try:
        panel, _ = click_and_get_panel(page)
    finally:
        set_checkpoint(page, CHECKPOINT)

    panel.locator(".runpod-status", has_text="Failed: VALIDATION_FAILED").wait_for(timeout=TIMEOUT_MS)
    error = panel.locator(".runpod-error").inner_text()
    assert error.startswith("VALIDATION_FAILED: "), error
    assert "CheckpointLoaderSimple" in error and LOCAL_ONLY in error, error
    assert panel.locator(".runpod-images").count() == 0


def test_with_the_setting_on_the_run_button_queues_on_runpod(
    ui: LoadedPage, local_comfy: StandinComfyUI
) -> None:
    page = ui.page
    settings_file = local_comfy.root / "user" / "default" / "comfy.settings.json"
    page.evaluate("(id) => window.app.extensionManager.setting.set(id, true)", SETTING_ID)
    try:
        if page.locator(".p-toast-message").count():
            close_toasts(page)
        before = page.locator(".runpod-job").count()
        page.get_by_role("button", name="Run", exact=True).click()
        panel = page.locator(".runpod-job").nth(before)
        panel.locator(".runpod-status").filter(has_text=re.compile(r"^Done$")).wait_for(timeout=TIMEOUT_MS)
        assert panel.locator(".runpod-images img").count() == 1
        assert json.loads(settings_file.read_text())[SETTING_ID] is True  # stored server-side
    finally:
        page.evaluate("(id) => window.app.extensionManager.setting.set(id, false)", SETTING_ID)
    assert not [r for r in local_comfy.requests if r[:2] in {("POST", "/prompt"), ("POST", "/api/prompt")}]


def test_with_the_setting_on_a_refused_send_shows_in_comfyuis_dialog_and_stops_the_batch(
    ui: LoadedPage, local_comfy: StandinComfyUI
) -> None:
    page = ui.page
    config = local_comfy.root / "user" / "comfy-runpod.json"
    saved = config.read_text()
    config.write_text("{}")  # no endpoint configured
    page.evaluate("(id) => window.app.extensionManager.setting.set(id, true)", SETTING_ID)

    def sends() -> int:
        return len([r for r in local_comfy.requests if r[0] == "POST" and r[1].endswith("/runpod/queue")])

    try:
        before_panels, before_sends = page.locator(".runpod-job").count(), sends()
        page.evaluate("() => window.app.queuePrompt(0, 2)")  # Run with a batch count of 2
        dialog = page.get_by_role("dialog").filter(has_text="Queue on RunPod: NOT_CONFIGURED")
        dialog.wait_for(timeout=TIMEOUT_MS)
        assert sends() == before_sends + 1  # the batch stopped at the refusal
        assert page.locator(".runpod-job").count() == before_panels  # shown once, in the dialog
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden", timeout=TIMEOUT_MS)
    finally:
        config.write_text(saved)
        page.evaluate("(id) => window.app.extensionManager.setting.set(id, false)", SETTING_ID)
    assert not [r for r in local_comfy.requests if r[:2] in {("POST", "/prompt"), ("POST", "/api/prompt")}]


def test_the_keybinding_queues_on_runpod(ui: LoadedPage, local_comfy: StandinComfyUI) -> None:
    page = ui.page
    combo = page.evaluate(f"() => import('/extensions/{PACK}/runpod_logic.js').then((m) => m.KEYBINDING)")
    assert isinstance(combo, dict), "custom_node/web/runpod_logic.js exports no KEYBINDING"
    modifiers = [
        name for key, name in (("ctrl", "Control"), ("alt", "Alt"), ("shift", "Shift")) if combo.get(key)
    ]
    if page.locator(".p-toast-message").count():
        close_toasts(page)
    before = page.locator(".runpod-job").count()
    page.locator("body").press("+".join([*modifiers, combo["key"]]))
    panel = page.locator(".runpod-job").nth(before)
    panel.locator(".runpod-status").filter(has_text=re.compile(r"^Done$")).wait_for(timeout=TIMEOUT_MS)
    assert panel.locator(".runpod-images img").count() == 1  # "Done" shows with the outputs
    assert page.locator(".runpod-job").count() == before + 1
    assert not [r for r in local_comfy.requests if r[:2] in {("POST", "/prompt"), ("POST", "/api/prompt")}]


# -- the stand-in's frontend routes (no browser needed) -----------------------------------------


def test_the_standin_serves_the_frontend_and_the_extension_like_comfyui(local_comfy: StandinComfyUI) -> None:
    url = local_comfy.url
    root = requests.get(url + "/", timeout=10)
    assert root.status_code == 200 and "<title>ComfyUI</title>" in root.text
    assert root.headers["Cache-Control"] == "no-cache"
    script = requests.get(f"{url}/extensions/{PACK}/runpod.js", timeout=10)
    assert script.status_code == 200 and script.headers["Cache-Control"] == "no-cache"
    assert script.headers["Content-Type"].startswith("application/javascript")
    assert requests.get(f"{url}/scripts/app.js", timeout=10).status_code == 200
    extensions = requests.get(url + "/api/extensions", timeout=10).json()
    assert {f"/extensions/{PACK}/runpod.js", f"/extensions/{PACK}/runpod_logic.js"} <= set(extensions)
    assert all(e.startswith(("/extensions/core/", f"/extensions/{PACK}/")) for e in extensions), extensions
    # The pack's routes are ComfyUI routes: served with and without /api.
    for prefix in ("", "/api"):
        assert requests.get(f"{url}{prefix}/runpod/config", timeout=10).json()["configured"] is True
    assert requests.get(url + "/templates/index.json", timeout=10).json() == []
    assert requests.get(url + "/api/i18n", timeout=10).json() == {}
    assert requests.get(url + "/api/workflow_templates", timeout=10).json() == {}
    assert requests.get(url + "/api/global_subgraphs", timeout=10).status_code == 404  # newer ComfyUI


def test_the_standin_keeps_user_settings_and_files_like_comfyui(local_comfy: StandinComfyUI) -> None:
    url = local_comfy.url + "/api"
    assert requests.get(url + "/users", timeout=10).json() == {"storage": "server", "migrated": True}
    assert requests.get(url + "/settings/Test.Missing", timeout=10).json() is None
    assert requests.post(url + "/settings/Test.Value", json=[1, "a"], timeout=10).status_code == 200
    assert requests.post(url + "/settings", json={"Test.Other": True}, timeout=10).status_code == 200
    settings = requests.get(url + "/settings", timeout=10).json()
    assert settings["Test.Value"] == [1, "a"] and settings["Test.Other"] is True

    assert requests.get(url + "/userdata", timeout=10).status_code == 400
    assert requests.get(url + "/userdata?dir=workflows", timeout=10).status_code == 404
    assert requests.get(url + "/userdata/user.css", timeout=10).status_code == 404
    saved = requests.post(url + "/userdata/workflows%2Fa.json?overwrite=false", data=b"{}", timeout=10)
    assert saved.status_code == 200 and saved.json() == "workflows/a.json"
    again = requests.post(url + "/userdata/workflows%2Fa.json?overwrite=false", data=b"{}", timeout=10)
    assert again.status_code == 409
    listed = requests.get(url + "/userdata?dir=workflows&recurse=true&full_info=true", timeout=10).json()
    assert [(e["path"], e["size"]) for e in listed] == [("a.json", 2)]
    moved = requests.post(url + "/userdata/workflows%2Fa.json/move/workflows%2Fb.json", timeout=10)
    assert moved.json() == "workflows/b.json"
    tree = requests.get(url + "/v2/userdata?path=workflows", timeout=10).json()
    assert [(e["name"], e["type"]) for e in tree] == [("b.json", "file")]
    assert requests.get(url + "/userdata/workflows%2Fb.json", timeout=10).content == b"{}"
    assert requests.delete(url + "/userdata/workflows%2Fb.json", timeout=10).status_code == 204
    assert requests.get(url + "/userdata/..%2F..%2Fsecret", timeout=10).status_code == 403
