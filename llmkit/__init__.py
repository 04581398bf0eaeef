"""llmkit: get, size, serve and chat with local LLMs behind the OpenAI and Ollama APIs."""

__version__ = "0.1.0"
