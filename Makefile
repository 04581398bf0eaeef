# The two commands of the quick start. Both set everything up first.
.PHONY: serve test bench bench-prefix lint

serve:
	bash scripts/bootstrap.sh
	.venv/bin/llmkit serve

test:
	bash scripts/system-deps.sh
	bash scripts/bootstrap.sh test,transformers
	.venv/bin/ruff check llmkit tests bench
	.venv/bin/python -m pytest

bench:
	bash scripts/bootstrap.sh bench
	.venv/bin/python bench/serving.py

# llmkit vs llama.cpp's llama-server on shared prompts (builds llama-server once per CPU).
bench-prefix:
	bash scripts/bootstrap.sh bench
	.venv/bin/python bench/prefix.py
