"""What ``llmkit serve`` is told to do, as data: the server's settings (flags >
``LLMKIT_*`` > config file > defaults, generated from the registered engine
specs; ``settings``) and the multi-model config file with its model entries
(``file``). It sits below ``api/``, which reads the settings, and below the
wiring in ``llmkit.serving``, which acts on them; it knows the engines only
through their specs."""
