"""Rerank endpoints: ``POST /v1/rerank`` and ``/rerank`` in the shape llama-server,
vLLM and Jina share, and ``POST /v2/rerank`` in Cohere's."""
