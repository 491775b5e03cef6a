"""The task assistant: an openai-agents ``Agent`` over the MCP task tools, the chat use case and its
routes, conversation memory (SQL or the Dapr state store), and the offline model."""
