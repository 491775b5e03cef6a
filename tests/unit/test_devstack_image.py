"""The choices ``python -m devstack image build`` makes before it calls podman: which CA bundle
the build trusts, the podman settings it writes, and when the Debian-built base is remade."""

from __future__ import annotations

import re
import resource
import tomllib
from pathlib import Path

import pytest

from devstack import image
from devstack.errors import StackError


def test_the_build_trusts_the_hosts_ca_bundle_by_default_a_given_file_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("PIP_CERT", str(bundle))
    assert image.ca_bundle("auto") == bundle
    assert image.ca_bundle(str(bundle)) == bundle
    assert image.ca_bundle("none") is None


def test_a_ca_bundle_that_does_not_exist_is_refused_with_what_works(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"no such file.*`auto` or `none`"):
        image.ca_bundle(str(tmp_path / "missing.pem"))


def test_podman_runs_with_runc_and_limits_the_host_permits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    conf = image.containers_conf()
    assert conf.is_relative_to(tmp_path / "todo-agent")
    settings = tomllib.loads(conf.read_text())
    assert settings["engine"]["runtime"] == "runc"
    limits = dict(item.split("=") for item in settings["containers"]["default_ulimits"])
    nofile, nproc = (int(limits[k].split(":")[1]) for k in ("nofile", "nproc"))
    hard_nofile, hard_nproc = (
        resource.getrlimit(k)[1] for k in (resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC)
    )
    assert hard_nofile == resource.RLIM_INFINITY or nofile <= hard_nofile
    assert hard_nproc == resource.RLIM_INFINITY or nproc <= hard_nproc
    assert nproc <= int(Path("/proc/sys/kernel/pid_max").read_text())
    assert image.podman_env()["CONTAINERS_CONF"] == str(conf)


def test_editing_the_base_containerfile_names_a_new_base_so_it_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text("FROM debian\n")
    monkeypatch.setattr(image, "BASE_CONTAINERFILE", containerfile)
    before = image.python_base_name()
    containerfile.write_text("FROM debian\nRUN true\n")
    assert image.python_base_name() != before
    assert before.startswith("localhost/todo-agent-base/python:3.11-bookworm-")


def test_the_official_base_and_the_image_names_follow_the_dockerfile_and_the_project() -> None:
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image.official_base())
    version = image.project_version()
    assert image.image_names() == (
        f"localhost/todo-agent:{version}",
        f"docker.io/library/todo-agent:{version}",
    )
