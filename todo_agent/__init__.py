"""The composition root: settings, ``bootstrap(role, settings)`` and the role table, each role's ASGI
app, serving, and the ``todo-agent`` command. The only package that knows every part."""
