"""Where the stand-in keeps files: ComfyUI's ``folder_paths`` rules, reproduced.

The worker handler depends on these rules without seeing them: where uploads land, how
``SaveImage`` names and numbers files, which model names a loader combo offers, how
``extra_model_paths.yaml`` extends the model folders, what ``[output]`` after a file name
means. So this module reproduces ComfyUI 0.3.64's ``folder_paths.py`` and
``utils/extra_config.py`` behaviour (re-implemented, not copied):

* model folders are ``(paths, extensions)`` pairs; ``clip`` and ``unet`` are legacy aliases of
  ``text_encoders`` and ``diffusion_models``;
* a folder's file list is the recursive union over its paths, filtered by extension and sorted
  as plain strings;
* ``name [output]`` / ``[input]`` / ``[temp]`` picks the base directory;
* ``SaveImage`` counters continue from the highest ``<prefix>_NNNNN_`` file already present.

``extra_model_paths.yaml`` is read by a deliberately small parser (no PyYAML dependency) that
understands what those files contain in practice: top-level sections, ``key: value`` pairs,
``key: |`` literal blocks, comments and quoted scalars.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("comfyui_standin")

#: The extensions ComfyUI accepts for model files (``supported_pt_extensions``).
MODEL_EXTENSIONS: frozenset[str] = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
)

#: Legacy folder names that ComfyUI maps onto the current keys.
LEGACY_FOLDER_NAMES: dict[str, str] = {"unet": "diffusion_models", "clip": "text_encoders"}


def map_legacy(folder_name: str) -> str:
    """Return the current folder key for a legacy alias (``clip`` → ``text_encoders``)."""
    return LEGACY_FOLDER_NAMES.get(folder_name, folder_name)


def _default_model_folders(models_dir: Path, base_dir: Path) -> dict[str, list[Path]]:
    """The model folder table of a fresh ComfyUI, in ComfyUI's key order."""
    m = models_dir
    return {
        "checkpoints": [m / "checkpoints"],
        "configs": [m / "configs"],
        "loras": [m / "loras"],
        "vae": [m / "vae"],
        "text_encoders": [m / "text_encoders", m / "clip"],
        "diffusion_models": [m / "unet", m / "diffusion_models"],
        "clip_vision": [m / "clip_vision"],
        "style_models": [m / "style_models"],
        "embeddings": [m / "embeddings"],
        "diffusers": [m / "diffusers"],
        "vae_approx": [m / "vae_approx"],
        "controlnet": [m / "controlnet", m / "t2i_adapter"],
        "gligen": [m / "gligen"],
        "upscale_models": [m / "upscale_models"],
        "custom_nodes": [base_dir / "custom_nodes"],
        "hypernetworks": [m / "hypernetworks"],
        "photomaker": [m / "photomaker"],
        "classifiers": [m / "classifiers"],
        "model_patches": [m / "model_patches"],
        "audio_encoders": [m / "audio_encoders"],
    }


def _default_extensions(key: str) -> frozenset[str]:
    """Extensions per folder key; an empty set means "every file"."""
    if key == "configs":
        return frozenset({".yaml"})
    if key == "diffusers":
        return frozenset({"folder"})
    if key == "custom_nodes":
        return frozenset()
    if key == "classifiers":
        return frozenset({""})
    return MODEL_EXTENSIONS


@dataclass
class ModelFolder:
    """One ``folder_names_and_paths`` entry: search paths (first = default) and extensions."""

    paths: list[str]
    extensions: frozenset[str]


@dataclass
class FolderPaths:
    """The directories of one stand-in instance, with ComfyUI's lookup rules.

    Build it with :meth:`for_base_dir`, then apply ``--extra-model-paths-config`` files with
    :meth:`load_extra_model_paths` and the directory flags with the setters, in the order
    ComfyUI's ``main.py`` does (see ``cli.build_folder_paths``).
    """

    base_dir: Path
    input_dir: Path
    output_dir: Path
    temp_dir: Path
    user_dir: Path
    models_dir: Path
    folders: dict[str, ModelFolder] = field(default_factory=dict)

    @classmethod
    def for_base_dir(cls, base_dir: Path) -> FolderPaths:
        """Default layout under ``base_dir`` (the ComfyUI checkout or ``--base-directory``)."""
        base = base_dir.resolve()
        models = base / "models"
        folders = {
            key: ModelFolder([str(p) for p in paths], _default_extensions(key))
            for key, paths in _default_model_folders(models, base).items()
        }
        return cls(
            base_dir=base,
            input_dir=base / "input",
            output_dir=base / "output",
            temp_dir=base / "temp",
            user_dir=base / "user",
            models_dir=models,
            folders=folders,
        )

    # -- model folders -------------------------------------------------------------------

    def add_model_folder_path(self, folder_name: str, full_path: str, is_default: bool = False) -> None:
        """Add a search path; ``is_default`` puts it first (ComfyUI's default save location)."""
        key = map_legacy(folder_name)
        entry = self.folders.get(key)
        if entry is None:
            self.folders[key] = ModelFolder([full_path], frozenset())
            return
        if full_path in entry.paths:
            if is_default and entry.paths[0] != full_path:
                entry.paths.remove(full_path)
                entry.paths.insert(0, full_path)
        elif is_default:
            entry.paths.insert(0, full_path)
        else:
            entry.paths.append(full_path)

    def add_output_model_folders(self) -> None:
        """ComfyUI always appends these output-dir folders (where CheckpointSave etc. write)."""
        for key in ("checkpoints", "clip", "vae", "diffusion_models", "loras"):
            self.add_model_folder_path(key, str(self.output_dir / key))

    def get_folder_paths(self, folder_name: str) -> list[str]:
        """The search paths of a folder key (legacy aliases accepted)."""
        return list(self.folders[map_legacy(folder_name)].paths)

    def get_filename_list(self, folder_name: str) -> list[str]:
        """Sorted relative names of the matching files in every search path of a folder.

        Raises ``KeyError`` for an unknown folder, like ComfyUI.
        """
        entry = self.folders[map_legacy(folder_name)]
        found: set[str] = set()
        for folder in entry.paths:
            found.update(_filter_extensions(_recursive_files(Path(folder)), entry.extensions))
        return sorted(found)

    def get_full_path(self, folder_name: str, filename: str) -> Path | None:
        """The first existing file ``filename`` in the folder's search paths, else ``None``."""
        key = map_legacy(folder_name)
        if key not in self.folders:
            return None
        relative = os.path.relpath(os.path.join("/", filename), "/")  # noqa: PTH118 - string op
        for folder in self.folders[key].paths:
            candidate = Path(folder) / relative
            if candidate.is_file():
                return candidate
        return None

    def get_full_path_or_raise(self, folder_name: str, filename: str) -> Path:
        """Like :meth:`get_full_path`, raising ComfyUI's ``FileNotFoundError`` message."""
        path = self.get_full_path(folder_name, filename)
        if path is None:
            raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
        return path

    def folder_paths_json(self) -> dict[str, list[str]]:
        """The ``GET /internal/folder_paths`` body: folder key → search paths."""
        return {key: list(entry.paths) for key, entry in self.folders.items()}

    # -- input / output / temp -----------------------------------------------------------

    def get_directory_by_type(self, type_name: str | None) -> Path | None:
        """``output`` / ``temp`` / ``input`` → directory; anything else → ``None``."""
        return {"output": self.output_dir, "temp": self.temp_dir, "input": self.input_dir}.get(
            type_name or ""
        )

    def annotated_filepath(self, name: str) -> tuple[str, Path | None]:
        """Strip a trailing ``[output]``/``[input]``/``[temp]`` and return its directory."""
        if name.endswith("[output]"):
            return name[:-9], self.output_dir
        if name.endswith("[input]"):
            return name[:-8], self.input_dir
        if name.endswith("[temp]"):
            return name[:-7], self.temp_dir
        return name, None

    def get_annotated_filepath(self, name: str, default_dir: Path | None = None) -> str:
        """Absolute path (as ``str``, like ComfyUI) of an annotated name; input dir by default."""
        stripped, base = self.annotated_filepath(name)
        if base is None:
            base = default_dir if default_dir is not None else self.input_dir
        return os.path.join(str(base), stripped)  # noqa: PTH118 - ComfyUI joins strings

    def exists_annotated_filepath(self, name: str) -> bool:
        """Whether the annotated name exists (LoadImage's whole validation)."""
        stripped, base = self.annotated_filepath(name)
        if base is None:
            base = self.input_dir
        return Path(os.path.join(str(base), stripped)).exists()  # noqa: PTH118

    def input_image_files(self) -> list[str]:
        """LoadImage's combo: top-level files of the input dir whose MIME type is image/*."""
        if not self.input_dir.is_dir():
            return []
        files = [p.name for p in self.input_dir.iterdir() if p.is_file()]
        return sorted(_filter_content_types(files, {"image"}))

    def get_save_image_path(
        self, filename_prefix: str, output_dir: Path, image_width: int = 0, image_height: int = 0
    ) -> tuple[Path, str, int, str, str]:
        """ComfyUI's ``get_save_image_path``: folder, base name, next counter, subfolder, prefix.

        The prefix may contain subfolders (``sample/empty``) and ``%width%``-style variables.
        The counter continues after the highest ``<name>_NNNNN_*`` already in the folder.
        """
        if "%" in filename_prefix:
            filename_prefix = _compute_prefix_vars(filename_prefix, image_width, image_height)
        normalized = os.path.normpath(filename_prefix)
        subfolder = os.path.dirname(normalized)
        filename = os.path.basename(normalized)  # noqa: PTH119
        out = str(output_dir)
        full_output_folder = os.path.join(out, subfolder)  # noqa: PTH118
        common = os.path.commonpath((out, os.path.abspath(full_output_folder)))
        if common != out:
            message = (
                "**** ERROR: Saving image outside the output folder is not allowed."
                f"\n full_output_folder: {os.path.abspath(full_output_folder)}"
                f"\n         output_dir: {out}"
                f"\n         commonpath: {common}"
            )
            log.error(message)
            raise Exception(message)

        folder = Path(full_output_folder)
        try:
            names = os.listdir(folder)  # noqa: PTH208
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
            return folder, filename, 1, subfolder, filename_prefix
        prefix_len = len(filename)
        counters = []
        for name in names:
            head = name[: prefix_len + 1]
            try:
                digits = int(name[prefix_len + 1 :].split("_")[0])
            except ValueError:
                digits = 0
            if os.path.normcase(head[:-1]) == os.path.normcase(filename) and head[-1:] == "_":
                counters.append(digits)
        counter = max(counters) + 1 if counters else 1
        return folder, filename, counter, subfolder, filename_prefix

    # -- extra_model_paths.yaml ----------------------------------------------------------

    def load_extra_model_paths(self, yaml_path: Path) -> None:
        """Apply one ``extra_model_paths.yaml`` (section 6 of the reference).

        ``base_path`` is expanded (``~``, ``$VARS``) and taken relative to the YAML file's
        directory; each line of a value is one path; ``is_default`` puts paths first, so with
        several lines the last one ends up first, exactly as in ComfyUI.
        """
        config = parse_extra_model_paths(yaml_path.read_text(encoding="utf-8"))
        yaml_dir = yaml_path.resolve().parent
        for section in config.values():
            if section is None:
                continue
            conf = dict(section)
            base_path: str | None = None
            if "base_path" in conf:
                base_path = os.path.expandvars(os.path.expanduser(str(conf.pop("base_path"))))  # noqa: PTH111
                if not Path(base_path).is_absolute():
                    base_path = str((yaml_dir / base_path).resolve())
            is_default = bool(conf.pop("is_default", False))
            for key, value in conf.items():
                for line in str(value).split("\n"):
                    if not line:
                        continue
                    if base_path:
                        full = os.path.join(base_path, line)  # noqa: PTH118
                    elif not Path(line).is_absolute():
                        full = str((yaml_dir / line).absolute())
                    else:
                        full = line
                    normalized = os.path.normpath(full)
                    log.info("Adding extra search path %s %s", key, normalized)
                    self.add_model_folder_path(key, normalized, is_default)


def _recursive_files(directory: Path) -> list[str]:
    """Relative paths ('/'-separated) of every file below ``directory``, skipping ``.git``."""
    if not directory.is_dir():
        return []
    result: list[str] = []
    for dirpath, subdirs, filenames in os.walk(directory, followlinks=True, topdown=True):
        subdirs[:] = [d for d in subdirs if d != ".git"]
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), directory)  # noqa: PTH118
            result.append(rel.replace(os.sep, "/"))
    return result


def _filter_extensions(files: Collection[str], extensions: Collection[str]) -> list[str]:
    return sorted(
        f
        for f in files
        if not extensions or os.path.splitext(f)[-1].lower() in extensions  # noqa: PTH122
    )


def _filter_content_types(files: list[str], content_types: set[str]) -> list[str]:
    result = []
    for name in files:
        if name.rsplit(".", 1)[-1] == "webp":
            kind = "image"
        else:
            mime, _ = mimetypes.guess_type(name, strict=False)
            if not mime:
                continue
            kind = mime.split("/")[0]
        if kind in content_types:
            result.append(name)
    return result


def _compute_prefix_vars(prefix: str, width: int, height: int) -> str:
    now = time.localtime()
    replacements = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.tm_year),
        "%month%": str(now.tm_mon).zfill(2),
        "%day%": str(now.tm_mday).zfill(2),
        "%hour%": str(now.tm_hour).zfill(2),
        "%minute%": str(now.tm_min).zfill(2),
        "%second%": str(now.tm_sec).zfill(2),
    }
    for key, value in replacements.items():
        prefix = prefix.replace(key, value)
    return prefix


# -- the small YAML reader ---------------------------------------------------------------

YamlScalar = str | bool
YamlSection = dict[str, YamlScalar] | None

_BOOLEANS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


class ExtraModelPathsError(ValueError):
    """The YAML uses a construct the stand-in's small parser does not understand."""


def parse_extra_model_paths(text: str) -> dict[str, YamlSection]:
    """Parse the subset of YAML that ``extra_model_paths.yaml`` files use.

    Returns ``{section: {key: value}}`` (``None`` for an empty section). Values are strings,
    except ``true``/``false``-like words, which become booleans (PyYAML's YAML 1.1 rules).
    ``key: |`` (or ``|-``, ``>``) starts a block whose more-indented lines are joined with
    newlines. Anything else (lists, nested mappings, anchors) raises
    :class:`ExtraModelPathsError` naming the line, so a test fails loudly instead of
    silently using other paths than ComfyUI would.
    """
    result: dict[str, YamlSection] = {}
    section: str | None = None
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        raw = lines[index]
        index += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or stripped == "---":
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        key, sep, rest = stripped.partition(":")
        if not sep or not key or (rest and not rest.startswith(" ")):
            raise ExtraModelPathsError(f"line {index}: expected 'key: value', got {raw!r}")
        key = _unquote(key.strip())
        value = _strip_comment(rest).strip()
        if indent == 0:
            if value:
                raise ExtraModelPathsError(f"line {index}: top-level key {key!r} needs a mapping")
            section = key
            result[section] = None
            continue
        if section is None:
            raise ExtraModelPathsError(f"line {index}: indented key outside a section")
        if value in ("|", "|-", "|+", ">", ">-", ">+"):
            block: list[str] = []
            while index < len(lines):
                candidate = lines[index]
                if candidate.strip() and len(candidate) - len(candidate.lstrip(" ")) <= indent:
                    break
                block.append(candidate)
                index += 1
            text_lines = [b.strip() for b in block]
            while text_lines and not text_lines[-1]:
                text_lines.pop()
            joiner = " " if value.startswith(">") else "\n"
            scalar: YamlScalar = joiner.join(text_lines) + ("" if value.endswith("-") else "\n")
        elif value.startswith(("[", "{", "&", "*", "- ")):
            raise ExtraModelPathsError(f"line {index}: unsupported YAML value {value!r}")
        else:
            scalar = _BOOLEANS.get(value.lower(), _unquote(value)) if value else ""
        current = result[section]
        if current is None:
            current = {}
            result[section] = current
        current[key] = scalar
    return result


def _strip_comment(value: str) -> str:
    """Drop a trailing ``# comment`` (outside quotes)."""
    stripped = value.strip()
    if stripped[:1] in ("'", '"'):
        end = stripped.find(stripped[0], 1)
        return stripped if end < 0 else stripped[: end + 1]
    position = value.find(" #")
    return value if position < 0 else value[:position]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
