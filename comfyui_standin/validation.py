"""``POST /prompt`` validation with ComfyUI 0.3.64's rules, error bodies and quirks.

Re-implements the behaviour of ``execution.validate_prompt`` / ``validate_inputs``:

* prompt-level errors (``invalid_prompt``, ``prompt_no_outputs``) stop at the first problem;
* every output node is validated recursively through its links; an output whose subgraph has
  errors is dropped, and the prompt still runs if another output is valid (HTTP 200 with
  ``node_errors``); only when none is valid does it fail (HTTP 400,
  ``prompt_outputs_failed_validation``);
* the top-level ``details`` only lists the failing *output* nodes' own errors, so an error
  upstream of an output leaves it empty (as in the captured ``value_smaller_than_min``);
* literal values are converted (``int()``, ``float()``, ``str()``, ``bool()``) and written back
  into the prompt, which is what history then shows;
* a node with custom validation (``LoadImage``) skips the combo check for the inputs its
  validator takes;
* a failing output is added to ``dependent_outputs`` of *every* node that failed so far, even
  unrelated ones (ComfyUI does that too).

Exceptions raised while validating (a link to a missing node gives ``KeyError``) become
``exception_during_validation`` / ``exception_during_inner_validation`` entries with the
exception type and a traceback list, like in ComfyUI.
"""

from __future__ import annotations

import logging
import operator
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from .folders import FolderPaths
from .nodes import Node
from .registry import NodeRegistry

log = logging.getLogger("comfyui_standin")

ErrorDict = dict[str, Any]
Validated = dict[str, tuple[bool, list[ErrorDict], str]]


def is_link(value: Any) -> bool:
    """``[node_id: str, slot: int|float]`` is a link; anything else is a literal."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], (int, float))
    )


def full_type_name(klass: type) -> str:
    """``KeyError`` for builtins, ``module.Qualname`` otherwise (``PIL.UnidentifiedImageError``)."""
    module = klass.__module__
    if module == "builtins":
        return klass.__qualname__
    return f"{module}.{klass.__qualname__}"


def types_compatible(received_type: Any, input_type: Any) -> bool:
    """ComfyUI's ``validate_node_input``: equal, ``*`` on either side, or a shared member
    of comma-separated type lists."""
    if received_type == input_type:
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    if "*" in (received_type, input_type):
        return True
    received = {t.strip() for t in received_type.split(",")}
    accepted = {t.strip() for t in input_type.split(",")}
    return bool(received & accepted)


def get_input_info(class_inputs: dict[str, Any], name: str) -> tuple[Any, str | None, dict[str, Any]]:
    """(type, category, options) of an input; ``options`` is ``{}`` when the spec has none."""
    for category in ("required", "optional", "hidden"):
        section = class_inputs.get(category, {})
        if name in section:
            spec = section[name]
            if isinstance(spec, str):  # hidden inputs are plain strings ("PROMPT")
                return spec, category, {}
            return spec[0], category, (spec[1] if len(spec) > 1 else {})
    return None, None, {}


def _out_of_bounds(name: str, info: Any, value: Any, options: dict[str, Any]) -> dict[str, Any] | None:
    """ComfyUI's ``min``/``max`` check of an input: the error it reports, or None."""
    for key, word, outside in (("min", "smaller", operator.lt), ("max", "bigger", operator.gt)):
        if key in options and outside(value, options[key]):
            return {
                "type": f"value_{word}_than_{key}",
                "message": f"Value {value} {word} than {key} of {options[key]}",
                "details": f"{name}",
                "extra_info": {"input_name": name, "input_config": info, "received_value": value},
            }
    return None


@dataclass
class ValidationResult:
    """Outcome of :func:`validate_prompt`, shaped like ComfyUI's 4-tuple."""

    ok: bool
    error: ErrorDict | None
    good_outputs: list[str] = field(default_factory=list)
    node_errors: dict[str, Any] = field(default_factory=dict)


class PromptValidator:
    """Validates API-format prompts against a node registry and the current folders."""

    def __init__(self, registry: NodeRegistry, paths: FolderPaths) -> None:
        self.registry = registry
        self.paths = paths

    def _class(self, class_type: str) -> type[Node]:
        cls = self.registry.get(class_type)
        if cls is None:
            raise KeyError(class_type)
        return cls

    def validate_prompt(
        self, prompt: dict[str, Any], partial_execution_targets: list[str] | None
    ) -> ValidationResult:
        outputs: list[str] = []
        for node_id in prompt:
            node = prompt[node_id]
            if "class_type" not in node:
                return ValidationResult(
                    False,
                    {
                        "type": "invalid_prompt",
                        "message": "Cannot execute because a node is missing the class_type property.",
                        "details": f"Node ID '#{node_id}'",
                        "extra_info": {},
                    },
                )
            class_type = node["class_type"]
            cls = self.registry.get(class_type)
            if cls is None:
                return ValidationResult(
                    False,
                    {
                        "type": "invalid_prompt",
                        "message": f"Cannot execute because node {class_type} does not exist.",
                        "details": f"Node ID '#{node_id}'",
                        "extra_info": {},
                    },
                )
            if (
                cls.is_output_node()
                and (partial_execution_targets is None or node_id in partial_execution_targets)
                and node_id not in outputs
            ):
                outputs.append(node_id)

        if not outputs:
            return ValidationResult(
                False,
                {
                    "type": "prompt_no_outputs",
                    "message": "Prompt has no outputs",
                    "details": "",
                    "extra_info": {},
                },
            )

        good_outputs: list[str] = []
        failed: list[tuple[str, list[ErrorDict]]] = []
        node_errors: dict[str, Any] = {}
        validated: Validated = {}
        for output_id in outputs:
            try:
                valid, reasons, _ = self.validate_inputs(prompt, output_id, validated)
            except Exception as ex:
                typ, _, tb = sys.exc_info()
                valid = False
                reasons = [
                    {
                        "type": "exception_during_validation",
                        "message": "Exception when validating node",
                        "details": str(ex),
                        "extra_info": {
                            "exception_type": full_type_name(typ or type(ex)),
                            "traceback": traceback.format_tb(tb),
                        },
                    }
                ]
                validated[output_id] = (False, reasons, output_id)

            if valid is True:
                good_outputs.append(output_id)
                continue
            log.error("Failed to validate prompt for output %s:", output_id)
            if reasons:
                log.error("* (prompt):")
                for reason in reasons:
                    log.error("  - %s: %s", reason["message"], reason["details"])
            failed.append((output_id, reasons))
            for node_id, (node_valid, node_reasons, _) in validated.items():
                if node_valid is not True and node_reasons:
                    if node_id not in node_errors:
                        class_type = prompt[node_id]["class_type"]
                        node_errors[node_id] = {
                            "errors": node_reasons,
                            "dependent_outputs": [],
                            "class_type": class_type,
                        }
                        log.error("* %s %s:", class_type, node_id)
                        for reason in node_reasons:
                            log.error("  - %s: %s", reason["message"], reason["details"])
                    node_errors[node_id]["dependent_outputs"].append(output_id)
            log.error("Output will be ignored")

        if not good_outputs:
            details = "\n".join(
                f"{error['message']}: {error['details']}" for _, errors in failed for error in errors
            )
            return ValidationResult(
                False,
                {
                    "type": "prompt_outputs_failed_validation",
                    "message": "Prompt outputs failed validation",
                    "details": details,
                    "extra_info": {},
                },
                [],
                node_errors,
            )
        return ValidationResult(True, None, good_outputs, node_errors)

    def validate_inputs(
        self, prompt: dict[str, Any], unique_id: str, validated: Validated
    ) -> tuple[bool, list[ErrorDict], str]:
        if unique_id in validated:
            return validated[unique_id]
        inputs = prompt[unique_id]["inputs"]
        cls = self._class(prompt[unique_id]["class_type"])
        class_inputs = cls.input_types(self.paths)
        names = [*class_inputs.get("required", {}), *class_inputs.get("optional", {})]
        validator_args = cls.VALIDATE_INPUTS_ARGS or ()

        errors: list[ErrorDict] = []
        valid = True
        for name in names:
            input_type, category, options = get_input_info(class_inputs, name)
            if name not in inputs:
                if category == "required":
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": f"{name}",
                            "extra_info": {"input_name": name},
                        }
                    )
                continue

            value = inputs[name]
            info = [input_type, options]
            if isinstance(value, list):
                if len(value) != 2:
                    errors.append(
                        {
                            "type": "bad_linked_input",
                            "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            "details": f"{name}",
                            "extra_info": {"input_name": name, "input_config": info, "received_value": value},
                        }
                    )
                    continue
                source_id = value[0]
                source_class = self._class(prompt[source_id]["class_type"])
                received_type = source_class.return_types()[value[1]]
                if not types_compatible(received_type, input_type):
                    errors.append(
                        {
                            "type": "return_type_mismatch",
                            "message": "Return type mismatch between linked nodes",
                            "details": f"{name}, received_type({received_type}) mismatch "
                            f"input_type({input_type})",
                            "extra_info": {
                                "input_name": name,
                                "input_config": info,
                                "received_type": received_type,
                                "linked_node": value,
                            },
                        }
                    )
                    continue
                try:
                    if self.validate_inputs(prompt, source_id, validated)[0] is False:
                        valid = False
                        continue
                except Exception as ex:
                    typ, _, tb = sys.exc_info()
                    valid = False
                    validated[source_id] = (
                        False,
                        [
                            {
                                "type": "exception_during_inner_validation",
                                "message": "Exception when validating inner node",
                                "details": str(ex),
                                "extra_info": {
                                    "input_name": name,
                                    "input_config": info,
                                    "exception_message": str(ex),
                                    "exception_type": full_type_name(typ or type(ex)),
                                    "traceback": traceback.format_tb(tb),
                                    "linked_node": value,
                                },
                            }
                        ],
                        source_id,
                    )
                    continue
                continue

            try:
                if isinstance(value, dict) and "__value__" in value:
                    value = value["__value__"]
                    inputs[name] = value
                if input_type == "INT":
                    value = int(value)
                elif input_type == "FLOAT":
                    value = float(value)
                elif input_type == "STRING":
                    value = str(value)
                elif input_type == "BOOLEAN":
                    value = bool(value)
                inputs[name] = value
            except Exception as ex:
                errors.append(
                    {
                        "type": "invalid_input_type",
                        "message": f"Failed to convert an input value to a {input_type} value",
                        "details": f"{name}, {value}, {ex}",
                        "extra_info": {
                            "input_name": name,
                            "input_config": info,
                            "received_value": value,
                            "exception_message": str(ex),
                        },
                    }
                )
                continue

            if name in validator_args:
                continue
            if (bound_error := _out_of_bounds(name, info, value, options)) is not None:
                errors.append(bound_error)
                continue
            if isinstance(input_type, list) and value not in input_type:
                # ComfyUI does not echo long option lists (e.g. hundreds of model files).
                if len(input_type) > 20:
                    list_info, input_config = f"(list of length {len(input_type)})", None
                else:
                    list_info, input_config = str(input_type), info
                errors.append(
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": f"{name}: '{value}' not in {list_info}",
                        "extra_info": {
                            "input_name": name,
                            "input_config": input_config,
                            "received_value": value,
                        },
                    }
                )
                continue

        if validator_args:
            # Like get_input_data() without outputs: links are unknown (None) at this point.
            arguments = {
                name: (None if is_link(inputs[name]) else inputs[name])
                for name in validator_args
                if name in inputs
            }
            result = cls.validate_inputs(self.paths, **arguments)
            if result is not True:
                for name in arguments:
                    details = name if result is False else f"{name} - {result}"
                    errors.append(
                        {
                            "type": "custom_validation_failed",
                            "message": "Custom validation failed for node",
                            "details": details,
                            "extra_info": {"input_name": name},
                        }
                    )

        outcome = (False, errors, unique_id) if errors or valid is not True else (True, [], unique_id)
        validated[unique_id] = outcome
        return outcome
