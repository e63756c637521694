"""The seed's path for ``@agent``; it lives in :mod:`kagura.agents.decorator`.

>>> from kagura.core.decorators import agent
>>> import kagura
>>> agent is kagura.agent
True
"""

from kagura.agents.decorator import Agent, StreamingAgent, agent

__all__ = ["Agent", "StreamingAgent", "agent"]
