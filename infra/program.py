"""The Pulumi program: comfy-runpod's RunPod resources, from the typed stack config (``infra.settings``).

Why a ``main()`` rather than resources at import: the providers' modules are imported again in the provider
process (pickled by reference), and unit tests must set config/mocks before anything is created. The project
root's ``__main__.py`` is just ``from infra.program import main; main()`` (see Pulumi.yaml).

Shape: one network volume (the models; protected) shared by any number of ``ComfyEndpoint`` components, each a
serverless template plus an endpoint wired to the volume. The stack config declares them: the top-level
endpoint keys make one (``comfy``), or the ``endpoints`` object several (``endpoints.h200.gpuIds``, ...; see
``infra.settings``), each one more ``ComfyEndpoint(key, ...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

from infra.providers.endpoint import Endpoint
from infra.providers.network_volume import NetworkVolume
from infra.providers.registry_auth import RegistryAuth
from infra.providers.template import Template
from infra.release_summary import release_output
from infra.settings import ENDPOINTS_KEY, EndpointSettings, StackSettings, load_settings

COMPONENT_TYPE = "comfy-runpod:index:ComfyEndpoint"  # stable: changing it re-creates the children
JOB_API_BASE = "https://api.runpod.ai/v2"


@dataclass(frozen=True)
class ComfyEndpointArgs:
    """What one ComfyUI endpoint needs: its settings (``infra.spec``'s fields) and the shared parts as ids."""

    settings: EndpointSettings
    image_ref: pulumi.Input[str]
    volume_id: pulumi.Input[str]
    volume_data_center_id: pulumi.Input[str]
    registry_auth_id: pulumi.Input[str] | None = None
    # The stack's data center and the config key paths of this endpoint's GPU settings, for the REST
    # preflight's messages (infra.providers.endpoint); None: no preflight.
    preflight_keys: Mapping[str, str] | None = None


def preflight_keys(settings: StackSettings, endpoint: EndpointSettings) -> dict[str, str]:
    """What the Endpoint's check() needs to check ``endpoint`` against RunPod's catalog and name the keys."""
    own = "" if not settings.endpoints or len(settings.endpoints) == 1 else f"{ENDPOINTS_KEY}.{endpoint.key}."
    return {
        "dataCenterId": settings.data_center_id,
        "dataCenterKey": "dataCenterId",
        "gpuIds": f"{own}gpuIds",
        "allowedCudaVersions": f"{own}allowedCudaVersions",
    }


class ComfyEndpoint(pulumi.ComponentResource):
    """A RunPod serverless template and the endpoint that runs it, on the shared models volume."""

    template: Template
    endpoint: Endpoint
    template_id: pulumi.Output[str]
    endpoint_id: pulumi.Output[str]
    endpoint_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: ComfyEndpointArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings = args.settings
        template = Template(
            f"{name}-template",
            settings,
            image_name=args.image_ref,
            env_secret=settings.template_env_secret,
            container_registry_auth_id=args.registry_auth_id,
            opts=child,
        )
        # Without explicit locations the volume pins the workers to its data center anyway; saying so keeps
        # the endpoint's config honest (and check() cross-checks it).
        # Over REST the endpoint owns its container settings (the template only seeds them at creation), so
        # it gets the template's too: a new image or env rolls its workers under either API.
        endpoint = Endpoint(
            f"{name}-endpoint",
            settings,
            template_id=template.id,
            network_volume_id=args.volume_id,
            volume_data_center_id=args.volume_data_center_id,
            locations=None if settings.locations else [args.volume_data_center_id],
            image_name=args.image_ref,
            container=settings,
            env_secret=settings.template_env_secret,
            container_registry_auth_id=args.registry_auth_id,
            preflight_keys=args.preflight_keys,
            opts=child,
        )
        self.template = template
        self.endpoint = endpoint
        self.template_id = template.id
        self.endpoint_id = endpoint.id
        self.endpoint_url = endpoint.id.apply(lambda i: f"{JOB_API_BASE}/{i}")
        self.register_outputs(
            {"templateId": self.template_id, "endpointId": self.endpoint_id, "endpointUrl": self.endpoint_url}
        )


def build_image(settings: StackSettings, registry_password: pulumi.Output[str] | None) -> pulumi.Output[str]:
    """Build image/Dockerfile for linux/amd64 with pulumi-docker, push it, return the digest-pinned ref.

    pulumi-docker is imported here, not at module level: a stack with a prebuilt ``imageRef`` does not need
    it (nor Docker). Pushing uses registryUsername/registryPassword when set, else the local `docker login`.
    """
    import pulumi_docker as docker  # type: ignore[import-not-found, unused-ignore]  # optional, see above

    assert settings.image_repository is not None
    registry = None
    if settings.registry_username and registry_password is not None:
        registry = docker.RegistryArgs(
            server=settings.image_repository.split("/", 1)[0],
            username=settings.registry_username,
            password=registry_password,
        )
    image = docker.Image(
        "worker-image",
        image_name=f"{settings.image_repository}:{pulumi.get_stack()}",
        build=docker.DockerBuildArgs(context=".", dockerfile="image/Dockerfile", platform="linux/amd64"),
        registry=registry,
    )
    # repo_digest is REPO@sha256:...: the template (hence every worker) gets exactly the image just pushed.
    digest: pulumi.Output[str] = image.repo_digest
    return digest


def declare(
    settings: StackSettings, registry_password: pulumi.Output[str] | None = None
) -> dict[str, ComfyEndpoint]:
    """Declare every resource of the stack and export its outputs; returns the endpoints by key.

    Outputs: ``endpoints`` (key -> endpointId, endpointUrl, templateId) for every endpoint, and
    ``endpointId``, ``endpointUrl``, ``templateId`` of the first one (the tasks' defaults), volume, image ref.
    """
    registry_auth_id: pulumi.Input[str] | None = settings.registry_auth_id
    if settings.registry_username and registry_password is not None:
        # Private image: RunPod pulls it with these credentials (shared by every endpoint of the stack).
        registry_auth_id = RegistryAuth(
            "registry-auth",
            name=f"{settings.top.template_name}-registry",
            username=settings.registry_username,
            password=registry_password,
        ).id
    volume = NetworkVolume(
        "models-volume",
        name=settings.volume_name,
        size=settings.volume_size_gb,
        data_center_id=settings.data_center_id,
        volume_type=settings.volume_type,
        # The volume holds the models: a replace (new data center) or a destroy must be a deliberate act
        # (`pulumi config set volumeProtect false`, `pulumi up`, then destroy).
        opts=pulumi.ResourceOptions(protect=settings.volume_protect),
    )
    image_ref: pulumi.Input[str] = (
        settings.image_ref if settings.image_ref is not None else build_image(settings, registry_password)
    )
    endpoints = {
        endpoint.key: ComfyEndpoint(
            endpoint.key,
            ComfyEndpointArgs(
                endpoint,
                image_ref=image_ref,
                volume_id=volume.id,
                volume_data_center_id=volume.dataCenterId,
                registry_auth_id=registry_auth_id,
                preflight_keys=preflight_keys(settings, endpoint),
            ),
        )
        for endpoint in settings.endpoint_list()
    }
    first = next(iter(endpoints.values()))
    pulumi.export("endpointId", first.endpoint_id)
    pulumi.export("endpointUrl", first.endpoint_url)
    pulumi.export("templateId", first.template_id)
    pulumi.export(
        "endpoints",
        {
            key: {"endpointId": e.endpoint_id, "endpointUrl": e.endpoint_url, "templateId": e.template_id}
            for key, e in endpoints.items()
        },
    )
    pulumi.export("volumeId", volume.id)
    pulumi.export("volumeDataCenter", volume.dataCenterId)
    pulumi.export("imageRef", image_ref)
    api_key = pulumi.Config().require_secret("runpodApiKey")
    pulumi.export(
        "endpointRelease",
        release_output(first.endpoint_id, first.endpoint.version, api_key, settings.runpod_api),
    )
    return endpoints


def main() -> None:
    config = pulumi.Config()
    # Declared secret in Pulumi.yaml; read here only so a missing key fails before anything is planned.
    # The providers read it themselves in configure(), so it never becomes a resource input.
    config.require_secret("runpodApiKey")
    settings = load_settings(config)
    for warning in settings.warnings:
        pulumi.log.warn(warning)
    declare(settings, config.get_secret("registryPassword"))
