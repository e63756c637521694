"""The ``@agent`` layer: prompt templates, tools, memory and return-type parsing.

:func:`~kagura.agents.decorator.agent` turns a function whose docstring is a Jinja2
prompt into an agent; :mod:`kagura.agents.spec` holds what it works out once (options,
signature, return shape), :mod:`kagura.agents.run` each call's steps (bind, render,
request, parse); :mod:`kagura.agents.prompt` renders the template,
:mod:`kagura.agents.tools` runs tool calls, :mod:`kagura.agents.memory` keeps a
conversation, :mod:`kagura.agents.output` parses an answer into the return type.
"""
