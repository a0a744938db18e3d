"""comfy-runpod's infrastructure as code: a RunPod API client and Pulumi dynamic providers.

Nothing here runs at import time: the dynamic providers are pickled *by reference*, so the provider
process imports these modules again and any module-level side effect would run twice (pulumi #4100).
"""
