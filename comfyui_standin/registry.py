"""The node classes a stand-in offers: the emulated core nodes and the fault-injection nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .core_nodes import CORE_NODES
from .fault_nodes import STANDIN_NODES
from .folders import FolderPaths
from .nodes import Node

NODE_CLASSES: dict[str, type[Node]] = {cls.CLASS_TYPE: cls for cls in (*CORE_NODES, *STANDIN_NODES)}


@dataclass
class NodeRegistry:
    """The node classes one stand-in offers (tests may register extra classes)."""

    classes: dict[str, type[Node]] = field(default_factory=lambda: dict(NODE_CLASSES))

    def get(self, class_type: str) -> type[Node] | None:
        return self.classes.get(class_type)

    def object_info(self, paths: FolderPaths) -> dict[str, Any]:
        return {name: cls.object_info(paths) for name, cls in self.classes.items()}
