"""Training: the loop (``trainer``), its config (``config``), EMA (``ema``), logs and plots
(``logs``), and the dense in-memory batches (``batches``). Import submodules directly."""
