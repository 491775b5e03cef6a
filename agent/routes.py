"""The chat API: send a message (JSON or Server-Sent Events) and manage conversations.

    POST   /api/chat                  {"message", "conversation_id"?} -> {"conversation_id", "reply", ...}
    POST   /api/chat/stream           same body -> SSE: start, delta, tool_call, tool_result, confirm,
                                      done | error
    POST   /api/conversations/{id}/confirmations/{confirmation_id}  {"confirm": bool} -> the outcome
    GET    /api/conversations         -> {"items": [{"id", "title", "created_at", "updated_at"}]}
    GET    /api/conversations/{id}    -> {"id", "title", "messages": [{"role", "content", "name"?}]}
    PATCH  /api/conversations/{id}    {"title"} -> the conversation
    DELETE /api/conversations/{id}    -> 204

Another user's conversation answers 404, exactly like a missing one. A model or tool failure
answers 502 with the reason, and the conversation keeps only complete turns.

When a tool call of the turn needs the user's yes, the reply carries it as a confirmation
(``{"type": "confirm", "id", "question", "action", "count"}``: a ``confirm`` event, and
``confirmations`` in ``done`` and in the JSON reply). Answering it runs the call at most once
(``Chat.answer``); an unknown id answers 404, one answered already, left behind by a later
message or asked more than 30 minutes ago 409.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from agent.chat import MAX_MESSAGE_LENGTH, Chat, ChatFailed
from agent.confirmations import ConfirmationStale, ConfirmationUnknown, pending_in, still_open
from agent.memory import ConversationNotFound
from agent.transcript import messages_of
from auth import bearer_token
from tasks.inputs import Text
from tasks.service import Actor

#: A conversation's id as the store keeps it (64 characters at most).
ConversationId = Annotated[Text, Path(max_length=64)]
#: A confirmation's id: the id of the tool call that needs the yes.
ConfirmationId = Annotated[Text, Path(max_length=200)]


class ChatRequest(BaseModel):
    message: Text = Field(min_length=1, max_length=MAX_MESSAGE_LENGTH, description="What the user says.")
    conversation_id: Text | None = Field(default=None, max_length=64, description="Omit to start one.")


class ToolCallOut(BaseModel):
    name: str
    arguments: dict[str, Any]
    output: Any
    is_error: bool = False


class ConfirmationOut(BaseModel):
    type: Literal["confirm"] = "confirm"
    id: str = Field(description="Answer it at /api/conversations/{conversation_id}/confirmations/{id}.")
    question: str
    action: str = Field(description="The tool that waits for the yes: delete_task, delete_tasks, …")
    count: int | None = Field(default=None, description="How many tasks it would change, when known.")


class ChatResponse(BaseModel):
    conversation_id: str
    reply: str
    tool_calls: list[ToolCallOut]
    confirmations: list[ConfirmationOut] = Field(default_factory=list)


class ConfirmationAnswer(BaseModel):
    confirm: bool = Field(description="true: go ahead; false: cancel (nothing changes).")


class ConfirmationOutcome(BaseModel):
    conversation_id: str
    id: str
    confirmed: bool
    said: str = Field(description="The user's answer, as it now reads in the conversation.")
    reply: str = Field(description="What happened, as it now reads in the conversation.")
    tool_call: ToolCallOut | None = None


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
    confirmations: list[ConfirmationOut] = Field(
        default_factory=list, description="What the last turn left for the user to confirm."
    )


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
        open_now = still_open(info.updated_at, service.clock())
        pending = [ConfirmationOut(**c.public()) for c in pending_in(items)] if open_now else []
        return Transcript(**info.public(), messages=messages_of(items), confirmations=pending)

    @routes.post(
        "/conversations/{conversation_id}/confirmations/{confirmation_id}",
        summary="Confirm or cancel what the assistant asked to confirm",
        response_model=ConfirmationOutcome,
        responses={404: {"description": "No such conversation or confirmation"},
                   409: {"description": "Answered already, or the conversation moved on"}},
    )  # fmt: skip
    async def answer_confirmation(
        conversation_id: ConversationId, confirmation_id: ConfirmationId, body: ConfirmationAnswer,
        request: Request, actor: Actor = Depends(current_actor),
    ) -> JSONResponse:  # fmt: skip
        try:
            answered = await service.answer(
                actor, conversation_id, confirmation_id, confirmed=body.confirm, bearer=bearer_token(request)
            )
        except ConversationNotFound as exc:
            raise _not_found(exc) from exc
        except ConfirmationUnknown as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
        except ConfirmationStale as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        except ChatFailed as exc:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, exc.detail) from exc
        return JSONResponse(answered.public())

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
