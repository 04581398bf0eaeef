from llmkit.cli.main import cli

cli()
