"""infra/k8s without a cluster and without helm: the values files, our own manifests and the
commands of infra/k8s/README.md checked against each other and against the official charts.

Helm cannot render here, so what the charts do with our values (which secret keys they read when
the values do not say, which images they run, which Host headers MLflow accepts) is copied below
as data from the charts' sources at the versions the README pins. infra/k8s/README.md maps each
of its steps to the test that stands for it.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
README = K8S / "README.md"
BASE_JOB_TEMPLATE = K8S / "base-job-template.json"
# The API version our manifests are validated against; the README names it.
KUBERNETES_VERSION = "1.31"

Tree = dict[str, Any]
SecretRef = tuple[str, str | None]  # (secret, key); None: the whole secret (envFrom)


# --- What the charts do, as data ---------------------------------------------------------------


@dataclass(frozen=True)
class SecretSlot:
    """A secret a chart reads when the values name one: where its name and keys are."""

    name: str  # dotted path of the secret's name (or a list of names)
    keys: tuple[str, ...] = ()  # dotted paths of the key names the chart reads
    fixed_keys: tuple[str, ...] = ()  # keys the chart reads whatever the values say
    when: tuple[str, ...] = ()  # paths that must all be true for the chart to read it
    unless: tuple[str, ...] = ()  # paths none of which may be true


@dataclass(frozen=True)
class ImageSlot:
    """A container image a chart runs: the paths of its repository and tag, and when."""

    repository: str
    tag: str
    default_tag: str = ""  # the chart's fallback for an empty tag (its appVersion)
    when: tuple[str, ...] = ()
    stack_only: bool = False  # it runs the stack's code: only the stack's image will do


@dataclass(frozen=True)
class Chart:
    """What this test knows of one official chart at one version, copied from its sources."""

    name: str  # as in `helm install RELEASE <repo>/<name>`
    repository: str  # the Helm repository's URL, as in `helm repo add <repo> URL`
    version: str
    values_file: str
    defaults: Tree  # the part of the chart's values.yaml the checks below rely on
    secrets: tuple[SecretSlot, ...]
    images: tuple[ImageSlot, ...]
    # Values this test does not model (other secrets, other images): they must stay like this.
    must: dict[str, Any] = field(default_factory=dict)


# community-charts/helm-charts, charts/mlflow at chart version 1.11.5 (appVersion 3.15.1,
# commit 9d23d003): values.yaml for the defaults; templates/deployment.yaml for the secrets read
# (existingDatabaseSecret's PGUSER/PGPASSWORD, the ini writer's ADMIN_* and DB_*, S3's keys) and
# for the images (the migration container's tag falls back to the chart's appVersion).
MLFLOW = Chart(
    name="mlflow",
    repository="https://community-charts.github.io/helm-charts",
    version="1.11.5",
    values_file="mlflow-values.yaml",
    defaults={
        "fullnameOverride": "",
        "nameOverride": "",
        "image": {"repository": "burakince/mlflow", "tag": ""},
        "initImages": {
            "dbchecker": {"repository": "busybox", "tag": "1.38.0"},
            "mlflowDbMigration": {"repository": "burakince/mlflow", "tag": ""},
            "iniFileInitializer": {"repository": "busybox", "tag": "1.38.0"},
        },
        "service": {"port": 80},
        "backendStore": {
            "databaseMigration": False,
            "databaseConnectionCheck": False,
            "postgres": {"enabled": False},
            "existingDatabaseSecret": {
                "name": "",
                "usernameKey": "username",
                "passwordKey": "password",
            },
        },
        "artifactRoot": {
            "s3": {
                "enabled": False,
                "existingSecret": {
                    "name": "",
                    "keyOfAccessKeyId": "AWS_ACCESS_KEY_ID",
                    "keyOfSecretAccessKey": "AWS_SECRET_ACCESS_KEY",
                },
            }
        },
        "auth": {
            "enabled": False,
            "existingAdminSecret": {
                "name": "",
                "usernameKey": "username",
                "passwordKey": "password",
            },
            "postgres": {
                "enabled": False,
                "existingSecret": {
                    "name": "",
                    "usernameKey": "username",
                    "passwordKey": "password",
                },
            },
        },
        "extraSecretNamesForEnvFrom": [],
        "extraArgs": {},
        "serverAllowedHosts": [],
        "ingress": {"enabled": False, "hosts": [{"host": "chart-example.local"}]},
    },
    secrets=(
        SecretSlot(
            "backendStore.existingDatabaseSecret.name",
            keys=(
                "backendStore.existingDatabaseSecret.usernameKey",
                "backendStore.existingDatabaseSecret.passwordKey",
            ),
            when=("backendStore.postgres.enabled",),
        ),
        SecretSlot(
            "auth.existingAdminSecret.name",
            keys=("auth.existingAdminSecret.usernameKey", "auth.existingAdminSecret.passwordKey"),
            when=("auth.enabled",),
        ),
        SecretSlot(
            "auth.postgres.existingSecret.name",
            keys=(
                "auth.postgres.existingSecret.usernameKey",
                "auth.postgres.existingSecret.passwordKey",
            ),
            when=("auth.enabled", "auth.postgres.enabled"),
        ),
        SecretSlot(
            "artifactRoot.s3.existingSecret.name",
            keys=(
                "artifactRoot.s3.existingSecret.keyOfAccessKeyId",
                "artifactRoot.s3.existingSecret.keyOfSecretAccessKey",
            ),
            when=("artifactRoot.s3.enabled",),
        ),
        SecretSlot("extraSecretNamesForEnvFrom"),
    ),
    images=(
        ImageSlot("image.repository", "image.tag", default_tag="3.15.1", stack_only=True),
        ImageSlot(
            "initImages.mlflowDbMigration.repository",
            "initImages.mlflowDbMigration.tag",
            default_tag="3.15.1",
            when=("backendStore.databaseMigration", "backendStore.postgres.enabled"),
            stack_only=True,
        ),
        ImageSlot(
            "initImages.dbchecker.repository",
            "initImages.dbchecker.tag",
            when=("backendStore.databaseConnectionCheck", "backendStore.postgres.enabled"),
        ),
        ImageSlot(
            "initImages.iniFileInitializer.repository",
            "initImages.iniFileInitializer.tag",
            when=("auth.enabled",),
        ),
    ),
    must={
        "ldapAuth.enabled": False,
        "oidcAuth.enabled": False,
        "oauth2Proxy.enabled": False,
        "postgresql.enabled": False,
        "mysql.enabled": False,
        "minio.enabled": False,
        "backendStore.mysql.enabled": False,
        "backendStore.mssql.enabled": False,
        "image.digest": False,
    },
)

# PrefectHQ/prefect-helm, charts/prefect-server at release tag 2026.8.18172642: values.yaml for
# the defaults; templates/deployment.yaml (PREFECT_SERVER_API_AUTH_STRING from key `auth-string`)
# and _helpers.tpl (server.database-env: key `connection-string` of secret.name) for the secrets.
PREFECT_SERVER = Chart(
    name="prefect-server",
    repository="https://prefecthq.github.io/prefect-helm",
    version="2026.8.18172642",
    values_file="prefect-server-values.yaml",
    defaults={
        "fullnameOverride": "prefect-server",
        "global": {
            "prefect": {"image": {"repository": "prefecthq/prefect", "prefectTag": "3-latest"}}
        },
        "server": {
            "apiBasePath": "/api",
            "basicAuth": {"enabled": False, "existingSecret": ""},
            "extraEnvVarsSecret": "",
        },
        "service": {"port": 4200},
        "secret": {"create": True, "name": ""},
        "sqlite": {"enabled": False},
        "postgresql": {"enabled": True},
        "redis": {"enabled": False},
        "backgroundServices": {"runAsSeparateDeployment": False},
    },
    secrets=(
        SecretSlot(
            "server.basicAuth.existingSecret",
            fixed_keys=("auth-string",),
            when=("server.basicAuth.enabled",),
        ),
        SecretSlot(
            "secret.name",
            fixed_keys=("connection-string",),
            unless=("secret.create", "sqlite.enabled", "postgresql.enabled"),
        ),
        SecretSlot("server.extraEnvVarsSecret"),
    ),
    images=(
        ImageSlot(
            "global.prefect.image.repository", "global.prefect.image.prefectTag", stack_only=True
        ),
    ),
    must={
        "postgresql.enabled": False,
        "postgresql.auth.existingSecret": False,
        "sqlite.enabled": False,
        "redis.enabled": False,
        "backgroundServices.runAsSeparateDeployment": False,
        "externalDatabase": False,
        "server.extraContainers": False,
        "server.extraInitContainers": False,
    },
)

# PrefectHQ/prefect-helm, charts/prefect-worker at release tag 2026.8.18172642: values.yaml for
# the defaults; templates/deployment.yaml for the secret (PREFECT_API_AUTH_STRING from key
# `auth-string`, also handed to the flow-run pods) and the image (worker and init container).
PREFECT_WORKER = Chart(
    name="prefect-worker",
    repository="https://prefecthq.github.io/prefect-helm",
    version="2026.8.18172642",
    values_file="prefect-worker-values.yaml",
    defaults={
        "fullnameOverride": "prefect-worker",
        "worker": {
            "image": {"repository": "prefecthq/prefect", "prefectTag": "3-python3.11-kubernetes"},
            "apiConfig": "cloud",
            "selfHostedServerApiConfig": {
                "apiUrl": "",
                "basicAuth": {"enabled": False, "existingSecret": ""},
            },
            "config": {"workPool": "", "type": "kubernetes"},
            "extraEnvVarsSecret": "",
            "extraEnvVarsSecrets": [],
        },
    },
    secrets=(
        SecretSlot(
            "worker.selfHostedServerApiConfig.basicAuth.existingSecret",
            fixed_keys=("auth-string",),
            when=("worker.selfHostedServerApiConfig.basicAuth.enabled",),
        ),
        SecretSlot("worker.extraEnvVarsSecret"),
        SecretSlot("worker.extraEnvVarsSecrets"),
    ),
    images=(ImageSlot("worker.image.repository", "worker.image.prefectTag"),),
    must={
        "worker.apiConfig": "selfHostedServer",
        "worker.config.type": "kubernetes",
        "worker.config.baseJobTemplate.existingConfigMapName": False,
        "worker.extraContainers": False,
        "worker.initContainer.extraContainers": False,
    },
)

CHARTS = (MLFLOW, PREFECT_SERVER, PREFECT_WORKER)

# MLflow 3.17.2, mlflow/server/security_utils.py: with no allowed hosts given, only loopback and
# private-IP Host headers pass (get_default_allowed_hosts), never a Service's name.
MLFLOW_DEFAULT_ALLOWED_HOSTS = (
    ["localhost", "127.0.0.1", "[::1]", "0.0.0.0"]
    + ["localhost:*", "127.0.0.1:*", "[[]::1]:*", "0.0.0.0:*", "192.168.*", "10.*"]
    + [f"172.{i}.*" for i in range(16, 32)]
    + ["fc00:*", "fd00:*"]
)

# Images other than the stack's that may run, each pinned to a version. The worker's must be the
# stack's own Prefect (pyproject.toml), with prefect-kubernetes, which the stack's image lacks.
OFFICIAL_TAGS = {
    "busybox": r"\d+\.\d+\.\d+",
    "prefecthq/prefect": r"{prefect}-python3\.11-kubernetes",
}
# The stack's image tag: a version or a commit, never a name that moves.
PINNED_TAG = re.compile(r"v?\d+\.\d+\.\d+([.+-][\w.]+)?|[0-9a-f]{7,40}")


# --- Reading the files ---------------------------------------------------------------------------


def dig(tree: Any, path: str) -> Any:
    """The value at a dotted path, or None where the path ends early."""
    for part in path.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def coalesce(defaults: Tree, values: Tree) -> Tree:
    """Helm's merge of a values file over the chart's: maps merge, the rest is replaced."""
    merged = dict(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)  # Helm deletes a default set to null
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = value
    return merged


@functools.cache
def yaml_docs(name: str) -> tuple[Tree, ...]:
    """The documents of a YAML file in infra/k8s (empty ones dropped)."""
    return tuple(doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc)


def chart_values(chart: Chart) -> Tree:
    """Our values file for a chart, over the chart's defaults."""
    return coalesce(chart.defaults, yaml_docs(chart.values_file)[0])


@functools.cache
def base_job_template() -> Tree:
    """The worker's base job template (the flow-run pods)."""
    template: Tree = json.loads(BASE_JOB_TEMPLATE.read_text())
    return template


def manifest_files() -> list[str]:
    """Our own plain manifests: every YAML file in infra/k8s that is not a chart's values."""
    return sorted(p.name for p in K8S.glob("*.yaml") if not p.name.endswith("-values.yaml"))


def manifest(name: str, kind: str, resource: str) -> Tree:
    """One resource of our manifests, by file, kind and name."""
    for doc in yaml_docs(name):
        if doc["kind"] == kind and doc["metadata"]["name"] == resource:
            return doc
    raise AssertionError(f"{name} has no {kind} {resource}")


def walk(tree: Any) -> Iterator[Tree]:
    """Every mapping inside a tree of mappings and lists, the tree itself first."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from walk(value)
    elif isinstance(tree, list | tuple):
        for value in tree:
            yield from walk(value)


def secret_refs(tree: Any) -> set[SecretRef]:
    """The secrets a pod spec (or anything holding one) reads: keys, whole ones, volumes."""
    refs: set[SecretRef] = set()
    for node in walk(tree):
        ref = node.get("secretKeyRef")
        if isinstance(ref, dict) and not ref.get("optional"):
            refs.add((ref["name"], ref["key"]))
        whole = node.get("secretRef")
        if isinstance(whole, dict) and not whole.get("optional"):
            refs.add((whole["name"], None))
        volume = node.get("secret")
        if isinstance(volume, dict) and "secretName" in volume:
            refs.add((volume["secretName"], None))
    return refs


def env_values(tree: Any, name: str) -> list[str]:
    """The plain values given to one environment variable anywhere in a tree."""
    return [
        node["value"]
        for node in walk(tree)
        if node.get("name") == name and isinstance(node.get("value"), str)
    ]


def containers(tree: Any) -> list[Tree]:
    """Every container and init container of the pod specs in a tree."""
    found: list[Tree] = []
    for node in walk(tree):
        for field_name in ("initContainers", "containers"):
            if isinstance(node.get(field_name), list):
                found += node[field_name]
    return found


@dataclass(frozen=True)
class Command:
    """One command of the README's shell blocks: its program, positional words and options."""

    index: int  # where it stands among the README's commands
    words: tuple[str, ...]
    options: dict[str, tuple[str, ...]]

    def option(self, *names: str) -> tuple[str, ...]:
        """Every value given under any of these option names."""
        return tuple(value for name in names for value in self.options.get(name, ()))


# Options of kubectl, helm and docker that take a value, so the word after them is not positional.
VALUE_OPTIONS = {
    "-n", "--namespace", "-f", "--filename", "--values", "--version", "--set", "--set-file",
    "--set-string", "--from-literal", "--from-file", "--from-env-file", "--for", "--timeout",
    "-o", "-t", "--tag", "--file", "--type",
}  # fmt: skip


def parse_command(index: int, tokens: list[str]) -> Command:
    """Split one command's words into positional ones and options (with their values)."""
    words: list[str] = []
    options: dict[str, list[str]] = {}
    rest = iter(tokens)
    for token in rest:
        if token.startswith("-") and token != "-":
            name, equals, value = token.partition("=")
            if not equals and name in VALUE_OPTIONS:
                value = next(rest)
            options.setdefault(name, []).append(value)
        else:
            words.append(token)
    return Command(index, tuple(words), {k: tuple(v) for k, v in options.items()})


@functools.cache
def readme_commands() -> tuple[Command, ...]:
    """The commands of the README's ```sh blocks, in order (continuations joined, pipes split)."""
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", README.read_text(), re.S)
    commands: list[Command] = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            start = 0
            for end, token in enumerate([*tokens, "|"]):
                if token in {"|", "&&", ";", "||"}:
                    if tokens[start:end]:
                        commands.append(parse_command(len(commands), tokens[start:end]))
                    start = end + 1
    return tuple(commands)


def commands_of(program: str, *words: str) -> list[Command]:
    """The README's commands of one program whose positional words start with these."""
    return [
        c
        for c in readme_commands()
        if c.words[:1] == (program,) and c.words[1 : 1 + len(words)] == words
    ]


def readme_namespace() -> str:
    """The namespace the README creates."""
    created = commands_of("kubectl", "create", "namespace")
    assert len(created) == 1, "the README creates exactly one namespace"
    return created[0].words[3]


def created_secrets() -> set[SecretRef]:
    """Every (secret, key) the README's `kubectl create secret generic` commands make, and
    (secret, None) for each secret."""
    made: set[SecretRef] = set()
    for command in commands_of("kubectl", "create", "secret", "generic"):
        name = command.words[4]
        assert not command.option("--from-env-file"), "keys must be named, not read from a file"
        assert not command.option("--from-literal"), "a secret's value never on a command line"
        made.add((name, None))
        for literal in command.option("--from-literal"):
            made.add((name, literal.partition("=")[0]))
        for source in command.option("--from-file"):
            key, equals, path = source.partition("=")
            made.add((name, key if equals else Path(key).name))
    return made


@dataclass(frozen=True)
class Release:
    """One `helm upgrade --install` (or `helm install`) of the README."""

    index: int
    name: str
    chart: str  # <repo>/<chart>
    version: str | None
    values: tuple[str, ...]
    set_files: tuple[str, ...]
    namespace: str | None


def releases() -> dict[str, Release]:
    """The README's chart releases, by chart name."""
    found: dict[str, Release] = {}
    for command in commands_of("helm"):
        verb = command.words[1]
        if verb == "install" or (verb == "upgrade" and "--install" in command.options):
            name, chart = command.words[2:4]
            versions = command.option("--version")
            namespaces = command.option("-n", "--namespace")
            found[chart.split("/")[-1]] = Release(
                command.index,
                name,
                chart,
                versions[0] if versions else None,
                command.option("-f", "--values"),
                command.option("--set-file"),
                namespaces[0] if namespaces else None,
            )
    return found


def applied_at(file_name: str) -> int:
    """Where the README applies one of our manifests."""
    for command in commands_of("kubectl", "apply"):
        if f"infra/k8s/{file_name}" in command.option("-f", "--filename"):
            return command.index
    raise AssertionError(f"the README never applies infra/k8s/{file_name}")


def stack_image() -> str:
    """The image the README builds from services/app/Dockerfile and pushes."""
    builds = commands_of("docker", "build")
    assert len(builds) == 1, "the README builds the stack's image once"
    assert builds[0].option("-f", "--file") == ("services/app/Dockerfile",)
    (image,) = builds[0].option("-t", "--tag")
    pushed = [c.words[2] for c in commands_of("docker", "push")]
    assert pushed == [image], f"the README pushes {pushed}, not the image it builds ({image})"
    return image


def chart_fullname(chart: Chart, release: str) -> str:
    """The chart's Service name for a release (its _helpers.tpl fullname)."""
    values = chart_values(chart)
    if values.get("fullnameOverride"):
        return str(values["fullnameOverride"])
    name = values.get("nameOverride") or chart.name
    return release if name in release else f"{release}-{name}"


def host_header(url: str) -> str:
    """The Host header an HTTP client sends for a URL (default ports left out)."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}[parts.scheme]
    assert parts.hostname, url
    return parts.hostname if parts.port in (None, default) else f"{parts.hostname}:{parts.port}"


def mlflow_allowed_hosts() -> list[str]:
    """The Host headers the MLflow release accepts, as MLflow 3.17.2 and the chart decide."""
    values = chart_values(MLFLOW)
    # templates/deployment.yaml passes extraArgs as `--allowed-hosts=...`, which MLflow's CLI
    # (mlflow/utils/cli_args.py ALLOWED_HOSTS) prefers to the environment the chart also sets.
    if extra := dig(values, "extraArgs.allowedHosts"):
        return [host.strip() for host in str(extra).split(",")]
    # _helpers.tpl mlflow.serverAllowedHosts: the ingress hosts, then serverAllowedHosts.
    hosts = [h["host"] for h in values["ingress"]["hosts"] if values["ingress"]["enabled"]]
    hosts += list(values["serverAllowedHosts"])
    return hosts or MLFLOW_DEFAULT_ALLOWED_HOSTS


def host_allowed(allowed: list[str], host: str) -> bool:
    """MLflow's rule (security_utils.is_allowed_host_header): exact, or a glob with `*`."""
    return "*" in allowed or any(
        fnmatch.fnmatch(host, pattern) if "*" in pattern else host == pattern for pattern in allowed
    )


def prefect_version() -> str:
    """The stack's Prefect, pinned in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (pin,) = [d for d in project["dependencies"] if d.startswith("prefect==")]
    return str(pin.removeprefix("prefect=="))


def rendered_images(chart: Chart) -> list[tuple[str, str, bool]]:
    """The images a chart renders with our values: (where, image, whether only the stack's)."""
    values = chart_values(chart)
    images = []
    for slot in chart.images:
        if all(dig(values, path) for path in slot.when):
            tag = dig(values, slot.tag) or slot.default_tag
            image = f"{dig(values, slot.repository)}:{tag}"
            images.append((f"{chart.values_file} {slot.repository}", image, slot.stack_only))
    return images


def chart_secret_refs(chart: Chart) -> set[SecretRef]:
    """The secrets and keys a chart reads with our values (its default key names included)."""
    values = chart_values(chart)
    refs = secret_refs(yaml_docs(chart.values_file)[0])
    for slot in chart.secrets:
        names = dig(values, slot.name)
        if not names or not all(dig(values, p) for p in slot.when):
            continue
        if any(dig(values, p) for p in slot.unless):
            continue
        for name in names if isinstance(names, list) else [names]:
            keys = [dig(values, path) for path in slot.keys] + list(slot.fixed_keys)
            refs |= {(name, key) for key in keys} if keys else {(name, None)}
    return refs


def render_flow_run_job() -> Tree:
    """The base job template's Job with its variables' defaults, as Prefect fills it in."""
    template = base_job_template()
    values = {
        name: spec["default"]
        for name, spec in template["variables"]["properties"].items()
        if "default" in spec
    }
    values |= {"name": "flow-run", "labels": {"prefect.io/flow-run-id": "1"}}

    def fill(node: Any) -> Any:
        """Placeholders replaced; a whole-value placeholder without a value drops its key."""
        if isinstance(node, dict):
            filled = {k: fill(v) for k, v in node.items()}
            return {k: v for k, v in filled.items() if v is not None}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str) and (whole := re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", node)):
            return values.get(whole.group(1))
        if isinstance(node, str):
            return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(values[m.group(1)]), node)
        return node

    job: Tree = fill(template["job_configuration"]["job_manifest"])
    pod = job["spec"]["template"]["spec"]
    # Prefect adds its own command (prefect_kubernetes/worker.py _populate_command_if_not_present).
    pod["containers"][0].setdefault("args", ["prefect", "flow-run"])
    # prefect-kubernetes refuses a template without these two in the *pod* spec
    # (_get_base_job_manifest), where the API server drops them as unknown: not ours to fix.
    for misplaced in ("parallelism", "completions"):
        pod.pop(misplaced)
    return job


# --- The checks ----------------------------------------------------------------------------------


def test_readme_names_the_kubernetes_version() -> None:
    """The README names the Kubernetes version the manifests are validated against."""
    assert re.search(rf"Kubernetes {re.escape(KUBERNETES_VERSION)}\b", README.read_text())


def test_every_command_runs_in_the_namespace() -> None:
    """Every kubectl and helm command (but the namespace's and the repos') names the namespace."""
    namespace = readme_namespace()
    for command in commands_of("kubectl") + commands_of("helm"):
        if command.words[1:3] == ("create", "namespace") or command.words[1] == "repo":
            continue
        assert command.option("-n", "--namespace") == (namespace,), command.words


def test_every_secret_key_is_created() -> None:
    """Each secret and key the charts (defaults included), the flow runs and our manifests read
    is made by the README's `kubectl create secret` commands."""
    made = created_secrets()
    needed = {ref: chart.values_file for chart in CHARTS for ref in chart_secret_refs(chart)}
    needed |= {ref: BASE_JOB_TEMPLATE.name for ref in secret_refs(base_job_template())}
    for name in manifest_files():
        needed |= {ref: name for ref in secret_refs(yaml_docs(name))}
    missing = sorted(
        f"{s}/{k or '*'} ({where})" for (s, k), where in needed.items() if (s, k) not in made
    )
    assert not missing, f"read but never created by the README: {missing}"


def test_charts_model_only_what_is_used() -> None:
    """Features whose secrets and images this test does not model stay as it expects."""
    for chart in CHARTS:
        values = chart_values(chart)
        for path, expected in chart.must.items():
            if expected is False:
                assert not dig(values, path), f"{chart.values_file}: {path} is not modelled here"
            else:
                assert dig(values, path) == expected, f"{chart.values_file}: {path}"


def test_mlflow_allows_every_client_host() -> None:
    """Every MLflow URL a client of the stack uses passes MLflow's exact Host header check."""
    allowed = mlflow_allowed_hosts()
    sources: dict[str, list[str]] = {
        BASE_JOB_TEMPLATE.name: [],
        **{n: [] for n in manifest_files()},
    }
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_UI_URL"):
        sources[BASE_JOB_TEMPLATE.name] += env_values(base_job_template(), name)
        for file_name in manifest_files():
            sources[file_name] += env_values(yaml_docs(file_name), name)
        for chart in CHARTS:
            sources.setdefault(chart.values_file, [])
            sources[chart.values_file] += env_values(yaml_docs(chart.values_file), name)
    # Not vacuous: the flow runs, the model server and the accounts job all call MLflow.
    for client in (BASE_JOB_TEMPLATE.name, "serving.yaml", "mlflow-users.yaml"):
        assert sources[client], f"{client} names no MLflow URL"
    for where, urls in sources.items():
        for url in urls:
            host = host_header(url)
            assert host_allowed(allowed, host), f"{where}: MLflow answers 403 to Host {host}"


def test_in_cluster_urls_name_the_services() -> None:
    """The in-cluster URLs name the charts' Services, in the README's namespace, on their ports."""
    namespace, installed = readme_namespace(), releases()
    mlflow = chart_fullname(MLFLOW, installed["mlflow"].name)
    mlflow_port = chart_values(MLFLOW)["service"]["port"]
    trees = [base_job_template(), *(yaml_docs(n) for n in manifest_files())]
    for url in [u for tree in trees for u in env_values(tree, "MLFLOW_TRACKING_URI")]:
        parts = urlsplit(url)
        assert parts.hostname == f"{mlflow}.{namespace}.svc.cluster.local", url
        assert (parts.port or 80) == mlflow_port, url
    server = chart_values(PREFECT_SERVER)
    prefect = chart_fullname(PREFECT_SERVER, installed["prefect-server"].name)
    worker_url = dig(chart_values(PREFECT_WORKER), "worker.selfHostedServerApiConfig.apiUrl")
    urls = [worker_url] + [u for tree in trees for u in env_values(tree, "PREFECT_API_URL")]
    for url in urls:
        parts = urlsplit(url)
        assert parts.hostname == f"{prefect}.{namespace}.svc.cluster.local", url
        assert parts.port == server["service"]["port"], url
        assert parts.path == server["server"]["apiBasePath"], url
    template_namespace = base_job_template()["variables"]["properties"]["namespace"]["default"]
    assert template_namespace == namespace, "the flow runs' Jobs would miss the secrets"


def test_every_image_is_the_stacks_or_pinned() -> None:
    """The stack's code runs in the README's image, pinned; anything else is official, pinned."""
    stack = stack_image()
    assert PINNED_TAG.fullmatch(stack.rpartition(":")[2]), f"{stack} is not pinned to a version"
    found = [image for chart in CHARTS for image in rendered_images(chart)]
    flow_runs = base_job_template()["variables"]["properties"]["image"].get("default", "")
    found.append((f"{BASE_JOB_TEMPLATE.name} image", flow_runs, True))
    for name in manifest_files():
        found += [(f"{name} {c['name']}", c["image"], True) for c in containers(yaml_docs(name))]
    prefect = re.escape(prefect_version())
    official = {repo: tag.format(prefect=prefect) for repo, tag in OFFICIAL_TAGS.items()}
    for where, image, stack_only in found:
        if image == stack:
            continue
        repository, _, tag = image.rpartition(":")
        assert not stack_only, f"{where}: {image}, not the stack's image {stack}"
        assert repository in official, f"{where}: {image} is neither the stack's nor official"
        assert re.fullmatch(official[repository], tag), f"{where}: {image} is not pinned"


def test_charts_are_pinned() -> None:
    """The README installs each chart, from its repository, with our values, at the version
    this test's copy of its defaults comes from."""
    namespace, installed = readme_namespace(), releases()
    repositories = {c.words[3]: c.words[4] for c in commands_of("helm", "repo", "add")}
    assert set(installed) == {chart.name for chart in CHARTS}
    for chart in CHARTS:
        release = installed[chart.name]
        repository, _, _ = release.chart.partition("/")
        assert repositories.get(repository) == chart.repository, chart.name
        assert release.version == chart.version, f"{chart.name}: pin --version {chart.version}"
        assert release.values == (f"infra/k8s/{chart.values_file}",), chart.name
        assert release.namespace == namespace, chart.name
    assert installed["prefect-worker"].set_files == (
        f"worker.config.baseJobTemplate.configuration=infra/k8s/{BASE_JOB_TEMPLATE.name}",
    )


def test_migration_is_the_stacks() -> None:
    """MLflow's schema is migrated by compose's command in the stack's image, not by the chart,
    on the databases and with the secret keys the MLflow release uses."""
    values = chart_values(MLFLOW)
    assert not values["backendStore"]["databaseMigration"], "the chart would run its own MLflow"
    job = manifest("mlflow-migrate.yaml", "Job", "mlflow-migrate")
    (container,) = containers(job)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert container["command"] == compose["services"]["mlflow-migrate"]["command"]
    assert container["image"] == stack_image()
    env = {e["name"]: e for e in container["env"]}
    database = values["backendStore"]["existingDatabaseSecret"]
    for uri_name, store in (
        ("MLFLOW_BACKEND_STORE_URI", values["backendStore"]["postgres"]),
        ("MLFLOW_AUTH_DATABASE_URI", values["auth"]["postgres"]),
    ):
        uri = urlsplit(env[uri_name]["value"])
        assert uri.scheme == f"postgresql+{store['driver']}", uri_name
        assert (uri.hostname, uri.port, uri.path) == (
            store["host"],
            store["port"],
            f"/{store['database']}",
        ), uri_name
        for part, key in ((uri.username, "usernameKey"), (uri.password, "passwordKey")):
            variable = re.fullmatch(r"\$\((\w+)\)", part or "")
            assert variable, f"{uri_name}: credentials come from the secret"
            ref = env[variable.group(1)]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == (database["name"], database[key]), uri_name


def test_deploy_job_is_make_deploy() -> None:
    """The deploy Job runs the Makefile's deploy commands, in order, on the worker's pool."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^deploy:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe and "prefect --no-prompt deploy --all" in recipe.group(1)
    assert "$(SYNC_AUTOMATIONS)" in recipe.group(1)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    automations = compose["services"]["prefect-automations"]["command"]
    job = manifest("prefect-deploy.yaml", "Job", "prefect-deploy")
    commands = [c["command"] for c in containers(job)]
    assert commands == [["prefect", "--no-prompt", "deploy", "--all"], automations]
    pool = dig(chart_values(PREFECT_WORKER), "worker.config.workPool")
    assert env_values(job, "WORK_POOL") == [pool, pool], "both steps must name the worker's pool"


def test_steps_run_in_order() -> None:
    """Namespace, image and secrets first; migration before MLflow; accounts after it; the
    deploy Job after the worker has made its (kubernetes) pool."""
    installed = releases()
    first_use = min(
        c.index for c in commands_of("helm", "upgrade") + commands_of("kubectl", "apply")
    )
    assert commands_of("kubectl", "create", "namespace")[0].index == 0
    assert max(c.index for c in commands_of("docker")) < first_use
    assert max(c.index for c in commands_of("kubectl", "create", "secret")) < first_use
    assert applied_at("mlflow-migrate.yaml") < installed["mlflow"].index
    assert installed["mlflow"].index < applied_at("mlflow-users.yaml")
    assert installed["prefect-server"].index < installed["prefect-worker"].index
    assert installed["prefect-worker"].index < applied_at("prefect-deploy.yaml")
    for name in manifest_files():
        applied_at(name)  # every manifest is applied somewhere


def test_mlflow_accounts_agree() -> None:
    """The accounts job makes the accounts the flow runs and the model server sign in with, and
    the flow runs' account is the one the stack-registry app lets move the champion."""
    users = manifest("mlflow-users.yaml", "Job", "mlflow-users")
    (worker,) = env_values(users, "MLFLOW_WORKER_USERNAME")
    (serving,) = env_values(users, "MLFLOW_SERVING_USERNAME")
    assert env_values(base_job_template(), "MLFLOW_TRACKING_USERNAME") == [worker]
    assert env_values(yaml_docs("serving.yaml"), "MLFLOW_TRACKING_USERNAME") == [serving]
    values = chart_values(MLFLOW)
    assert values["auth"]["appName"] == "stack-registry"
    assert values["extraEnvVars"]["MLFLOW_STACK_ACCOUNT"] == worker


def test_base_job_template_is_complete() -> None:
    """Every placeholder of the flow runs' job configuration is one of its variables (Prefect's
    server refuses the template otherwise)."""
    template = base_job_template()
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    assert used <= set(template["variables"]["properties"]), used


def test_manifests_validate() -> None:
    """Our manifests and the flow runs' Job validate against the Kubernetes API's schemas,
    unknown fields refused."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="dev dependency kubernetes-validate not installed"
    )
    documents = [(name, doc) for name in manifest_files() for doc in yaml_docs(name)]
    documents.append((BASE_JOB_TEMPLATE.name, render_flow_run_job()))
    errors = []
    for name, doc in documents:
        try:
            version = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{name} {doc['kind']} {path}: {error.message}")
            continue
        assert version == KUBERNETES_VERSION, f"{name}: validated against {version}"
    assert not errors, "\n".join(errors)
