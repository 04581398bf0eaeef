"""The conversations API: the stored conversations of ``llmkit chat`` and ``Chat``,
listed, edited and continued over HTTP (the chat page is its first user)."""
