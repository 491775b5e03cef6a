"""Reading an MCP client's results in the tests: the text of a prompt or resource, the URI of a
change heard on a listen stream (the SDK types each as a union of shapes)."""

from __future__ import annotations

from typing import Any

from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import (
    GetPromptResult,
    ReadResourceResult,
    TextContent,
    TextResourceContents,
    Tool,
    ToolAnnotations,
)


def prompt_text(result: GetPromptResult) -> str:
    """The text of a prompt's first message."""
    content = result.messages[0].content
    assert isinstance(content, TextContent), content
    return content.text


def resource_text(result: ReadResourceResult) -> str:
    """The text of a resource's first contents."""
    contents = result.contents[0]
    assert isinstance(contents, TextResourceContents), contents
    return contents.text


def updated_uri(event: Any) -> str:
    """The URI of a ``resources/updated`` event heard on a listen stream."""
    assert isinstance(event, ResourceUpdated), event
    return event.uri


def hints(tool: Tool) -> ToolAnnotations:
    """A tool's annotations (every tool of ours has them)."""
    assert tool.annotations is not None, tool.name
    return tool.annotations
