"""The wiring of ``llmkit serve``, which is no engine's job: the settings (flags >
``LLMKIT_*`` > config file > defaults, generated from the registered engines),
the config file and its model entries, building each entry's engine, and the
server's start-up and shutdown."""
