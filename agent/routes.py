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
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from agent.chat import MAX_MESSAGE_LENGTH, Chat, ChatFailed
from agent.memory import ConversationNotFound
from agent.transcript import messages_of
from tasks.inputs import Text
from todo_agent.deps import ContainerDep, CurrentActor, bearer_token

router = APIRouter(prefix="/api", tags=["chat"])
CHAT_KEY = "agent.chat"


def get_chat(container: ContainerDep) -> Chat:
    chat = container.extras.get(CHAT_KEY)
    if chat is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "The chat service is starting; retry shortly."
        )
    return chat  # type: ignore[no-any-return]


ChatDep = Annotated[Chat, Depends(get_chat)]


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


@router.post("/chat", summary="Send a message and wait for the reply", response_model=ChatResponse)
async def chat(body: ChatRequest, request: Request, actor: CurrentActor, chat: ChatDep) -> JSONResponse:
    try:
        reply = await chat.send(
            actor, body.message, conversation_id=body.conversation_id, bearer=bearer_token(request)
        )
    except ConversationNotFound as exc:
        raise _not_found(exc) from exc
    except ChatFailed as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, exc.detail) from exc
    return JSONResponse(reply.public(), headers={"Server-Timing": reply.timings.server_timing()})


@router.post("/chat/stream", summary="Send a message; the reply streams as Server-Sent Events")
async def chat_stream(
    body: ChatRequest, request: Request, actor: CurrentActor, chat: ChatDep
) -> EventSourceResponse:
    try:
        turn = await chat.begin(
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


@router.get("/conversations", summary="My conversations, most recent first")
async def list_conversations(actor: CurrentActor, chat: ChatDep) -> ConversationList:
    infos = await chat.store.recent(actor.user_id)
    return ConversationList(items=[ConversationOut(**info.public()) for info in infos])


@router.get("/conversations/{conversation_id}", summary="One conversation with its messages")
async def get_conversation(conversation_id: ConversationId, actor: CurrentActor, chat: ChatDep) -> Transcript:
    try:
        info = await chat.store.get(actor.user_id, conversation_id)
        items = await chat.store.load(actor.user_id, conversation_id)
    except ConversationNotFound as exc:
        raise _not_found(exc) from exc
    return Transcript(**info.public(), messages=messages_of(items))


@router.patch("/conversations/{conversation_id}", summary="Rename a conversation")
async def rename_conversation(
    conversation_id: ConversationId, body: Rename, actor: CurrentActor, chat: ChatDep
) -> ConversationOut:
    try:
        info = await chat.store.rename(actor.user_id, conversation_id, body.title.strip() or body.title)
    except ConversationNotFound as exc:
        raise _not_found(exc) from exc
    return ConversationOut(**info.public())


@router.delete(
    "/conversations/{conversation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a conversation",
)
async def delete_conversation(
    conversation_id: ConversationId, actor: CurrentActor, chat: ChatDep
) -> Response:
    try:
        await chat.store.delete(actor.user_id, conversation_id)
    except ConversationNotFound as exc:
        raise _not_found(exc) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)
