"""An import-linter contract type the built-in ones cannot express: "imports only these".

``custom_node/`` must work when copied alone into a ComfyUI, so it may import the standard
library, aiohttp (ComfyUI's own web server), the modules ComfyUI itself provides and its own
modules; nothing else. A ``forbidden`` contract can only list what is known to be bad; this
one lists what is allowed and reports every other import, whatever it is. Registered in
``pyproject.toml`` (``[tool.importlinter] contract_types``); ``uv run lint-imports`` runs it.

Options: ``source_module`` (a top-level package) and ``allowed`` (top-level module names
besides the standard library and the package itself). Needs ``include_external_packages``.
"""

from __future__ import annotations

import sys
from typing import cast

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


class AllowedImportsContract(Contract):
    """Every import of ``source_module`` (and its submodules) is the stdlib, itself or ``allowed``."""

    source_module = fields.StringField()
    allowed = fields.SetField(subfield=fields.StringField(), required=False, default=set())

    def _allowed(self) -> set[str]:
        # The field's parsed value replaces the class attribute on the instance.
        names: set[str] = cast(set[str], self.allowed)
        return {str(name) for name in names}

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        package = str(self.source_module)
        allowed = self._allowed() | {package}
        violations: list[str] = []
        for module in sorted(graph.find_descendants(package) | {package}):
            for imported in sorted(graph.find_modules_directly_imported_by(module)):
                top = imported.split(".")[0]
                if top in allowed or top in sys.stdlib_module_names:
                    continue
                lines = sorted(
                    {
                        detail["line_number"]
                        for detail in graph.get_import_details(importer=module, imported=imported)
                    }
                )
                where = ", ".join(f"l.{line}" for line in lines)
                violations.append(f"{module} -> {imported} ({where})")
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        allowed = ", ".join(sorted(self._allowed()))
        output.print(f"{self.source_module} may import only the standard library, itself and: {allowed}")
        output.new_line()
        for violation in check.metadata["violations"]:
            output.print_error(f"- {violation}", bold=False)
        output.new_line()
