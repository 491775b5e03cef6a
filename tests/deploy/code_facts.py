"""What the code says about itself, read at test time: the settings it reads from the
environment, the environment variables it reads directly, and the routes each role serves.

Nothing here is a hard-coded list: a setting or route added to the code shows up here.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from tests.deploy.deploy_support import REPO

if TYPE_CHECKING:
    from todo_agent.roles import Role

PACKAGES: Final = ("tasks", "auth", "sidecar", "mcp_server", "agent", "events", "todo_agent", "observability")


def import_all_packages() -> None:
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            if ".migrations." not in info.name:
                importlib.import_module(info.name)


def settings_classes() -> list[type[BaseSettings]]:
    """Every ``BaseSettings`` subclass defined in the product's packages."""
    import_all_packages()
    found: list[type[BaseSettings]] = []
    pending = list(BaseSettings.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls.__module__.split(".")[0] in PACKAGES and cls not in found:
            found.append(cls)
    return found


def env_names(cls: type[BaseSettings], field_name: str) -> set[str]:
    """The environment variable names one settings field reads (upper case)."""
    field = cls.model_fields[field_name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return {str(choice).upper() for choice in alias.choices}
    if isinstance(alias, str):
        return {alias.upper()}
    prefix = cls.model_config.get("env_prefix", "")
    return {f"{prefix}{field.alias or field_name}".upper()}


def settings_fields() -> list[tuple[type[BaseSettings], str, set[str], bool, bool]]:
    """(class, field, env names, required, secret) for every field of every settings class."""
    rows = []
    for cls in settings_classes():
        for name, field in cls.model_fields.items():
            secret = "Secret" in repr(field.annotation)
            rows.append((cls, name, env_names(cls, name), field.is_required(), secret))
    return rows


def direct_env_reads() -> list[tuple[str, str, bool]]:
    """(file, NAME, has_default) for os.environ / os.getenv reads with a literal name.
    ``get``/``getenv`` fall back (to None at least); only ``os.environ["NAME"]`` requires it."""
    reads = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                read = _env_read(node)
                if read is not None:
                    reads.append((str(path.relative_to(REPO)), *read))
    return reads


def _env_read(node: ast.AST) -> tuple[str, bool] | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        target = ast.unparse(node.func)
        if target in ("os.getenv", "os.environ.get", "environ.get", "getenv") and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                return node.args[0].value, True
    if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ"):
        if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            return node.slice.value, False
    return None


def role_app(role: Role, tmp_path: Path) -> Any:
    """The ASGI app ``todo-agent serve ROLE`` would run in Dapr mode, on a throwaway SQLite."""
    from pydantic import SecretStr

    from todo_agent.api import app_for
    from todo_agent.bootstrap import bootstrap
    from todo_agent.settings import Settings

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / f'{role}.db'}",
        data_dir=tmp_path,
        dapr_http_port=3500,
        dapr_grpc_port=50001,
        app_api_token=SecretStr("sidecar-only-" + "x" * 32),
    )
    return app_for(bootstrap(role, settings))


def serves(app: Any, method: str, path: str) -> bool:
    """Whether a route of ``app`` (not the catch-all MCP mount at "/") fully matches."""
    from starlette.routing import Match, Mount

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }
    for route in app.router.routes:
        if isinstance(route, Mount) and route.path == "":
            continue
        if route.matches(scope)[0] == Match.FULL:
            return True
    return False


def event_routes(app: Any) -> set[str]:
    """The subscriber routes ``todo_agent.api.serve_subscriptions`` put on the app."""
    return set(getattr(app.state, "event_routes", {}) or {})
