"""Configuration: .env generation and its agreement with docker-compose.yml."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from flows.settings import DEFAULT_DATA_BUCKET, Settings, documented_defaults
from infra import make_env
from tests.paths import REPO_ROOT

EXAMPLE = (REPO_ROOT / ".env.example").read_text()
COMPOSE = (REPO_ROOT / "docker-compose.yml").read_text()


def run_make_env(target) -> None:
    """Run the .env writer as `make up` does."""
    script = REPO_ROOT / "infra/make_env.py"
    example = REPO_ROOT / ".env.example"
    subprocess.run(
        [sys.executable, str(script), "--example", str(example), "--output", str(target)],
        check=True,
    )


def test_every_generated_value_is_filled_with_a_distinct_secret():
    first, second = (
        make_env.parse_env(make_env.render(EXAMPLE, {})),
        make_env.parse_env(make_env.render(EXAMPLE, {})),
    )
    generated = [line.split("=")[0] for line in EXAMPLE.splitlines() if "# generated" in line]
    assert {"POSTGRES_PASSWORD", "MLFLOW_DB_PASSWORD", "S3_SECRET_ACCESS_KEY"} <= set(generated)
    values = [first[key] for key in generated]
    assert all(len(value) >= 20 for value in values)
    assert len(set(values)) == len(values)
    assert all(first[key] != second[key] for key in generated)  # never a shared default
    assert all(re.fullmatch(r"(admin:)?[A-Za-z0-9_-]+", value) for value in values)  # URL-safe


def test_overrides_replace_values():
    env = make_env.parse_env(make_env.render(EXAMPLE, {"MLFLOW_PORT": "15000"}))
    assert env["MLFLOW_PORT"] == "15000"


def test_existing_env_keeps_its_values_and_gains_new_settings(tmp_path):
    target = tmp_path / ".env"
    target.write_text("POSTGRES_PASSWORD=mine\n")
    run_make_env(target)
    upgraded = target.read_text()
    assert upgraded.startswith("POSTGRES_PASSWORD=mine\n")
    env = make_env.parse_env(upgraded)
    assert env["POSTGRES_PASSWORD"] == "mine" and len(env["MLFLOW_ADMIN_PASSWORD"]) >= 20
    assert set(env) == set(make_env.parse_env(make_env.render(EXAMPLE, {})))
    run_make_env(target)
    assert target.read_text() == upgraded  # a second run adds nothing


def test_new_env_file_is_private(tmp_path):
    target = tmp_path / ".env"
    run_make_env(target)
    assert target.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("name", sorted(set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE))))
def test_every_compose_variable_is_documented(name):
    """Each setting the compose file reads appears in .env.example."""
    assert re.search(rf"^{name}=", EXAMPLE, re.MULTILINE), f"{name} missing from .env.example"


def test_compose_publishes_only_the_authenticated_services():
    """MLflow, its data proxy, Prefect and the model server: each asks who is calling. Prometheus
    (no sign-in) is on this machine's loopback only, whatever BIND_ADDRESS says."""
    published = re.findall(r'^\s+- "\$\{BIND_ADDRESS:-127\.0\.0\.1\}:\$\{(\w+)', COMPOSE, re.M)
    assert published == ["MLFLOW_PORT", "DATA_PROXY_PORT", "PREFECT_PORT", "SERVING_PORT"]
    loopback = re.findall(r'^\s+- "127\.0\.0\.1:\$\{(\w+)', COMPOSE, re.M)
    assert loopback == ["PROMETHEUS_PORT"]
    assert COMPOSE.count("ports:") == 5
    assert "container_name" not in COMPOSE and ":latest" not in COMPOSE


def test_env_example_documents_every_setting_of_the_model_with_its_default():
    """One source of defaults: flows/settings.py; .env.example must say the same."""
    example = make_env.parse_env(EXAMPLE)
    for name, default in documented_defaults().items():
        assert name in example, f"{name} (flows/settings.py) is missing from .env.example"
        if default:  # settings without a default may hold the compose stack's value
            assert example[name] == default, (
                f"{name}: .env.example {example[name]!r} != {default!r}"
            )


def test_env_example_names_the_default_data_bucket():
    assert make_env.parse_env(EXAMPLE)["DATA_BUCKET"] == DEFAULT_DATA_BUCKET


def test_empty_values_mean_the_default():
    """A blank line in .env must not turn a name into the empty string."""
    settings = Settings.from_mapping({"MODEL_NAME": "", "WORK_POOL": "", "TLC_BASE_URL": "x/"})
    assert settings.model_name == documented_defaults()["MODEL_NAME"]
    assert settings.work_pool == documented_defaults()["WORK_POOL"]
    assert settings.tlc_base_url == "x"


def test_kubernetes_material_parses_and_serves_with_the_compose_settings():
    """infra/k8s is untested on a cluster; at least it is valid YAML, and the model server's
    Deployment passes the settings the compose service passes."""
    import yaml

    for path in (REPO_ROOT / "infra" / "k8s").glob("*.yaml"):
        assert list(yaml.safe_load_all(path.read_text())), path
    deployment = next(yaml.safe_load_all((REPO_ROOT / "infra/k8s/serving.yaml").read_text()))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    compose = yaml.safe_load(COMPOSE)["services"]["serving"]
    assert container["command"][:3] == compose["command"][:3]
    assert {e["name"] for e in container["env"]} <= set(compose["environment"]) | {"MODEL_NAME"}
