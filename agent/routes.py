"""The chat API: send a message (JSON or Server-Sent Events) and manage conversations.

    POST   /api/chat                  {"message", "conversation_id"?} -> {"conversation_id", "reply", ...}
    POST   /api/chat/stream           same body -> SSE: start, delta, tool_call, tool_result, done | error
    GET    /api/conversations         -> {"items": [{"id", "title", "created_at", "updated_at"}]}
    GET    /api/conversations/{id}    -> {"id", "title", "messages": [{"role", "content", "name"?}]}
    PATCH  /api/conversations/{id}    {"title"} -> the conversation
    DELETE /api/conversations/{id}    -> 204

Another user's conversation answers 404, exactly like a missing one. A model or tool failure
answers 502 with the reason, and the conversation keeps only complete turns.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from agent.chat import MAX_MESSAGE_LENGTH, Chat, ChatFailed
from agent.memory import ConversationNotFound
from agent.transcript import messages_of
from mcp_server.auth import bearer_token
from tasks.inputs import Text
from tasks.service import Actor

#: A conversation's id as the store keeps it (64 characters at most).
ConversationId = Annotated[Text, Path(max_length=64)]


class ChatRequest(BaseModel):
    message: Text = Field(min_length=1, max_length=MAX_MESSAGE_LENGTH, description="What the user says.")
    conversation_id: Text | None = Field(default=None, max_length=64, description="Omit to start one.")


class ToolCallOut(BaseModel):
    name: str
    arguments: dict[str, Any]
    output: Any
    is_error: bool = False


class ChatResponse(BaseModel):
    conversation_id: str
    reply: str
    tool_calls: list[ToolCallOut]


class ConversationOut(BaseModel):
    id: str
    title: str
    created_at: str
    updated_at: str


class ConversationList(BaseModel):
    items: list[ConversationOut]


class Transcript(BaseModel):
    id: str
    title: str
    created_at: str
    updated_at: str
    messages: list[dict[str, Any]]


class Rename(BaseModel):
    title: Text = Field(min_length=1, max_length=200)


def _not_found(exc: ConversationNotFound) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))


def router(service: Chat, current_actor: Callable[..., Actor]) -> APIRouter:
    """The chat routes over ``service``, for the acting user (``current_actor``, a FastAPI dependency)."""
    routes = APIRouter(prefix="/api", tags=["chat"])

    @routes.post("/chat", summary="Send a message and wait for the reply", response_model=ChatResponse)
    async def chat(
        body: ChatRequest, request: Request, actor: Actor = Depends(current_actor)
    ) -> JSONResponse:
        try:
            reply = await service.send(
                actor, body.message, conversation_id=body.conversation_id, bearer=bearer_token(request)
            )
        except ConversationNotFound as exc:
            raise _not_found(exc) from exc
        except ChatFailed as exc:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, exc.detail) from exc
        return JSONResponse(reply.public(), headers={"Server-Timing": reply.timings.server_timing()})

    @routes.post("/chat/stream", summary="Send a message; the reply streams as Server-Sent Events")
    async def chat_stream(
        body: ChatRequest, request: Request, actor: Actor = Depends(current_actor)
    ) -> EventSourceResponse:
        try:
            turn = await service.begin(
                actor, body.message, conversation_id=body.conversation_id, bearer=bearer_token(request)
            )
        except ConversationNotFound as exc:
            raise _not_found(exc) from exc
        except ChatFailed as exc:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, exc.detail) from exc

        async def events() -> AsyncIterator[dict[str, str]]:
            async for event in turn.events():
                yield {"event": event.kind, "data": json.dumps(event.data, ensure_ascii=False, default=str)}

        return EventSourceResponse(events(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @routes.get("/conversations", summary="My conversations, most recent first")
    async def list_conversations(actor: Actor = Depends(current_actor)) -> ConversationList:
        infos = await service.store.recent(actor.user_id)
        return ConversationList(items=[ConversationOut(**info.public()) for info in infos])

    @routes.get("/conversations/{conversation_id}", summary="One conversation with its messages")
    async def get_conversation(
        conversation_id: ConversationId, actor: Actor = Depends(current_actor)
    ) -> Transcript:
        try:
            info = await service.store.get(actor.user_id, conversation_id)
            items = await service.store.load(actor.user_id, conversation_id)
        except ConversationNotFound as exc:
            raise _not_found(exc) from exc
        return Transcript(**info.public(), messages=messages_of(items))

    @routes.patch("/conversations/{conversation_id}", summary="Rename a conversation")
    async def rename_conversation(
        conversation_id: ConversationId, body: Rename, actor: Actor = Depends(current_actor)
    ) -> ConversationOut:
        try:
            info = await service.store.rename(
                actor.user_id, conversation_id, body.title.strip() or body.title
            )
        except ConversationNotFound as exc:
            raise _not_found(exc) from exc
        return ConversationOut(**info.public())

    @routes.delete(
        "/conversations/{conversation_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Delete a conversation",
    )
    async def delete_conversation(
        conversation_id: ConversationId, actor: Actor = Depends(current_actor)
    ) -> Response:
        try:
            await service.store.delete(actor.user_id, conversation_id)
        except ConversationNotFound as exc:
            raise _not_found(exc) from exc
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return routes
