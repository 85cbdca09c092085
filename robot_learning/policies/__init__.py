"""Policies: the inference interface (``base``), what the learned chunk policies share (``chunk_policy``),
checkpoints (``checkpoint``), the family registry (``registry``), networks (``nets``) and the families: diffusion / flow matching (``diffusion``),
ACT (``act``), autoregressive binned tokens (``autoregressive``). Import submodules directly; nothing heavy is
imported here."""
