"""The wiring of ``llmkit serve``, which is no engine's and no dialect's job: the
only package that knows ``api/`` and ``engines/`` together. It builds each
model entry's engine (``build``), manages the models a running server pulls,
creates and removes (``local_models``), sets up the server's logging
(``logs``), and starts and stops the server (``server``). What it is told to do
(the settings, the config file) lives below, in ``llmkit.config``."""
