# The two commands of the quick start. Both set everything up first.
.PHONY: serve test docs bench bench-prefix lint

serve:
	bash scripts/bootstrap.sh
	.venv/bin/llmkit serve

test:
	bash scripts/system-deps.sh
	bash scripts/bootstrap.sh test,transformers
	.venv/bin/ruff check llmkit tests bench
	.venv/bin/python -m pytest

# The docs site, into site/; --strict: a broken link or anchor fails the build.
docs:
	bash scripts/bootstrap.sh docs
	.venv/bin/mkdocs build --strict

bench:
	bash scripts/bootstrap.sh bench
	.venv/bin/python bench/serving.py

# llmkit vs llama.cpp's llama-server on shared prompts (builds llama-server once per CPU).
bench-prefix:
	bash scripts/bootstrap.sh bench
	.venv/bin/python bench/prefix.py
