"""Evaluation: policy rollouts in sim through the control runtime (``rollout``) and the summary
statistics of a run (``metrics``). Import submodules directly."""
