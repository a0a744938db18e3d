"""The Pulumi program: builds comfy-runpod's RunPod resources from the stack config.

Why a ``main()`` rather than resources at import: the providers' modules are imported again in the provider
process (pickled by reference), and unit tests must set config/mocks before anything is created. The project
root's ``__main__.py`` is expected to be just ``from infra.program import main; main()`` (see Pulumi.yaml).
Phase 1 manages the network volume; the template and endpoint follow.
"""

from __future__ import annotations

import pulumi

from infra.providers.network_volume import NetworkVolume


def main() -> None:
    config = pulumi.Config()
    # Declared secret in Pulumi.yaml; read here only so a missing key fails before anything is planned.
    # The providers read it themselves in configure(), so it never becomes a resource input.
    config.require_secret("runpodApiKey")
    volume = NetworkVolume(
        "models-volume",
        name=config.get("volumeName") or "comfy-models",
        size=config.get_int("volumeSizeGb") or 100,
        data_center_id=config.get("dataCenterId") or "EU-RO-1",
        # The volume holds the models: a replace (new data center) or a destroy must be a deliberate act.
        opts=pulumi.ResourceOptions(protect=True),
    )
    pulumi.export("volumeId", volume.id)
    pulumi.export("dataCenterId", volume.dataCenterId)
