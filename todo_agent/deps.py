"""FastAPI dependencies of the composition root: the container and the acting user (the parts'
routers are handed ``current_actor``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from auth import request_identity
from tasks.service import Actor
from todo_agent.bootstrap import Container


async def get_container(request: Request) -> Container:
    """``async``: FastAPI runs a plain ``def`` dependency in a worker thread, a hop per request."""
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def current_actor(request: Request, container: ContainerDep) -> Actor:
    """The user of the request (``auth.request_identity``: the identity the edge guard verified,
    else the bearer token's, else 401; the local user without sign-in)."""
    return container.actor_for_identity(request_identity(request, container.verifier))


CurrentActor = Annotated[Actor, Depends(current_actor)]
