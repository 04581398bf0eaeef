"""Chat with memory: conversations that outlive the process, and what of them to send.

- ``store.py``: the conversation store (SQLAlchemy Core; SQLite in the data
  directory by default, a PostgreSQL URL works the same), with its schema
  history in ``migrations.py`` and the export / import / Markdown document in
  ``transcript.py``. Every turn is committed before it is sent; interrupted
  replies are kept, marked. A conversation's messages are ``message_store.py``'s
  part of it, its items in OpenAI's shapes ``item_store.py``'s, and the values it
  hands out (``Conversation``, ``Entry``) live in ``records.py``.
- ``strategies.py``: pure functions from a stored history and a token budget to
  the messages to send (``buffer``, ``window:N``, ``tokens``, ``summary[:N]``).

The ``Chat`` object, the terminal chat, the web page and the LangChain history
are built on these two.
"""
