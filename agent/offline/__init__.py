"""The offline model: understands common task commands without an LLM.

>>> from agent.offline import OfflineModel
>>> agent = Agent(name="todo", instructions=instructions, model=OfflineModel(timezone="UTC"))

``parse_command`` is the pure text → command step the model is built on.
"""

from agent.offline.commands import Answer, Choice, Command, Reply, TaskRef, ToolCommand
from agent.offline.model import OfflineModel
from agent.offline.parser import parse_command

__all__ = [
    "Answer",
    "Choice",
    "Command",
    "OfflineModel",
    "Reply",
    "TaskRef",
    "ToolCommand",
    "parse_command",
]
