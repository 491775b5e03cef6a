"""todo_agent package."""
