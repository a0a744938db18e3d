"""Pulumi dynamic providers for RunPod resources (one module per resource, no side effects at import)."""
