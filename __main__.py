"""Pulumi's entry point (`pulumi up` runs the project root; see Pulumi.yaml and infra/program.py)."""

from infra.program import main

main()
