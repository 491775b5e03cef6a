"""FastAPI dependencies: the container and the verified acting user (given to the parts' routers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from mcp_server.auth import InvalidToken, bearer_token
from tasks.service import Actor
from todo_agent.bootstrap import Container

__all__ = ["ContainerDep", "CurrentActor", "bearer_token", "current_actor", "get_container"]


async def get_container(request: Request) -> Container:
    """``async``: FastAPI runs a plain ``def`` dependency in a worker thread, a hop per request."""
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def current_actor(request: Request, container: ContainerDep) -> Actor:
    """The user of the request: the identity the edge guard verified before the body was read
    (``/api/*`` with sign-in on), else the bearer token's (or the local user without sign-in)."""
    identity = getattr(request.state, "identity", None)
    if identity is not None:
        return container.actor_for_identity(identity)
    try:
        return container.authenticate(bearer_token(request))
    except InvalidToken as exc:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=str(exc),
            headers={"WWW-Authenticate": 'Bearer realm="todo-agent"'},
        ) from exc


CurrentActor = Annotated[Actor, Depends(current_actor)]
