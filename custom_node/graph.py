"""Depth of each node in an API-format prompt, to order a job's outputs.

A workflow's final result is usually produced by its deepest output node (the end of the
longest chain of links), while previews of intermediate steps sit higher up. Sorting the
outputs deepest first therefore shows the result the user wanted at the top of the overlay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class GraphCycleError(ValueError):
    """The prompt's links form a cycle; ComfyUI cannot execute it and no depth exists."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("the workflow's links form a cycle: " + " -> ".join(cycle))


def _upstream(node: Any) -> list[str]:
    """The ids of the nodes whose outputs feed ``node`` (links are ``[node_id, slot]``)."""
    inputs = node.get("inputs") if isinstance(node, dict) else None
    if not isinstance(inputs, dict):
        return []
    return [
        str(value[0])
        for value in inputs.values()
        if isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and isinstance(value[1], int)
    ]


def node_depths(prompt: Mapping[str, Any]) -> dict[str, int]:
    """Each node's depth: 0 without linked inputs, else 1 + the deepest upstream node.

    Links to nodes missing from the prompt are ignored (the endpoint reports them).
    Iterative, so a long chain cannot hit Python's recursion limit. Raises GraphCycleError.
    """
    nodes = {str(k): v for k, v in prompt.items()}
    depth: dict[str, int] = {}
    for root in nodes:
        if root in depth:
            continue
        # Depth-first walk with an explicit stack; ``on_path`` finds back edges (cycles).
        stack: list[tuple[str, list[str]]] = [(root, [u for u in _upstream(nodes[root]) if u in nodes])]
        on_path = [root]
        while stack:
            node_id, pending = stack[-1]
            while pending and pending[-1] in depth:
                pending.pop()
            if pending:
                nxt = pending.pop()
                if nxt in on_path:
                    raise GraphCycleError([*on_path[on_path.index(nxt) :], nxt])
                stack.append((nxt, [u for u in _upstream(nodes[nxt]) if u in nodes]))
                on_path.append(nxt)
                continue
            ups = [u for u in _upstream(nodes[node_id]) if u in nodes]
            depth[node_id] = 1 + max((depth[u] for u in ups), default=-1)
            stack.pop()
            on_path.pop()
    return depth


def upstream_closure(prompt: Mapping[str, Any], targets: list[str]) -> dict[str, Any]:
    """The part of ``prompt`` that ``targets`` need: those nodes and everything linked into them.

    This is what ComfyUI executes for ``/prompt``'s ``partial_execution_targets`` ("Queue
    selected output nodes"), as a prompt any ComfyUI runs whole. Ids missing from the prompt
    are skipped; key order follows ``prompt``.
    """
    nodes = {str(k): v for k, v in prompt.items()}
    keep: set[str] = set()
    stack = [t for t in targets if t in nodes]
    while stack:
        node_id = stack.pop()
        if node_id in keep:
            continue
        keep.add(node_id)
        stack.extend(u for u in _upstream(nodes[node_id]) if u in nodes and u not in keep)
    return {k: v for k, v in nodes.items() if k in keep}


def _id_key(node_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order ("2" before "10"), others after, by text."""
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def sort_by_depth(entries: list[dict[str, Any]], prompt: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``entries`` (each with a ``node_id``) deepest node first; adds ``depth`` to each.

    Equal depths keep node id order, and entries of one node keep their own order, so the
    result is deterministic. Entries of unknown nodes go last with depth -1.
    """
    depths = node_depths(prompt)
    decorated = []
    for index, entry in enumerate(entries):
        node_id = str(entry.get("node_id", ""))
        decorated.append(({**entry, "depth": depths.get(node_id, -1)}, _id_key(node_id), index))
    decorated.sort(key=lambda item: (-item[0]["depth"], item[1], item[2]))
    return [item[0] for item in decorated]
