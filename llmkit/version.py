"""llmkit's version, in a module of its own at the bottom of the house, so the HTTP
layers can stamp it on responses without importing the top package (the ``Chat``
facade); ``llmkit.__version__`` re-exports it."""

__version__ = "0.1.0"
