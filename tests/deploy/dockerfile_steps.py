"""Read a Dockerfile into stages of instructions, and replay a build stage's COPY and RUN
steps on this machine (into a temporary folder instead of an image layer)."""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(dockerfile: Path) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) with line continuations joined and comments dropped."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    logical = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        keyword, _, rest = (logical + line).partition(" ")
        logical = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            base = _expand(words[0], args)
            stages.append(Stage(base=base, name=words[2] if len(words) > 2 else None))
        elif keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


def _expand(text: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value).replace("$" + name, value)
    return text


def env_pairs(rest: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(rest))


def copy_sources(rest: str) -> tuple[list[str], str]:
    words = rest.split()
    words = [w for w in words if not w.startswith("--")]
    return words[:-1], words[-1]


def replay_build_stage(
    stage: Stage, *, context: Path, workdir: Path, venv: Path, python: str
) -> subprocess.CompletedProcess[str]:
    """Run the stage's COPY/RUN steps: sources copied from ``context`` into ``workdir``, the
    image's VIRTUAL_ENV replaced by ``venv``; ``python`` is the interpreter the RUNs see."""
    bin_dir = workdir.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").symlink_to(python)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    # Skipping bytecode compilation keeps the replay quick; the image build does compile.
    env["PIP_NO_COMPILE"] = "1"
    image_venv = None
    workdir.mkdir(parents=True, exist_ok=True)
    result = subprocess.CompletedProcess[str]([], 0, "", "")
    for keyword, rest in stage.instructions:
        if keyword == "ENV":
            for name, value in env_pairs(rest).items():
                if name == "VIRTUAL_ENV":
                    image_venv, value = value, str(venv)
                # The cache speeds the test up; the image build disables it to stay small.
                if name != "PIP_NO_CACHE_DIR":
                    env[name] = _expand(value, env)
        elif keyword == "COPY":
            sources, dest = copy_sources(rest)
            for pattern in sources:
                for match in glob.glob(str(context / pattern.rstrip("/"))):
                    _copy(Path(match), workdir / dest, is_dir_dest=dest.endswith("/"))
        elif keyword == "RUN":
            command = run_command(rest)
            command = command if image_venv is None else command.replace(image_venv, str(venv))
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                return result
    return result


def run_command(rest: str) -> str:
    """A RUN instruction's shell command without its leading options (``--mount=...``): the
    replay has no build secrets, so a step must also work without them."""
    words = rest.split(" ")
    while words and (words[0].startswith("--") or not words[0]):
        words.pop(0)
    return " ".join(words)


def _copy(source: Path, dest: Path, *, is_dir_dest: bool) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.db")
    if source.is_dir():
        shutil.copytree(source, dest, ignore=ignore, dirs_exist_ok=True)
    else:
        target = dest / source.name if is_dir_dest or dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def exec_form(rest: str) -> list[str]:
    """The JSON array of an exec-form instruction (after any --options)."""
    start = rest.index("[")
    return list(json.loads(rest[start:]))
