"""The MCP server: the task tools, prompts, completions and live resources over the use cases, for
stdio and streamable HTTP."""
