"""The policy families: one record per family, read by checkpoint loading, ``train --policy``, the sampler
choices of ``train`` / ``eval`` / ``serve`` and their help.

A ``Family`` names its policy class and its training hooks by import path (``"module:Name"``), imported only when
that family is used, so listing families imports no network code. The built-in families are below; a package of
your own adds one without editing this one, through an entry point in the group ``robot_learning.families``
whose object is a ``Family``::

    [project.entry-points."robot_learning.families"]
    toy = "my_package.toy:FAMILY"

or, in one process, ``register(Family(...))``. Every lookup reads the built-ins, the registered records and the
installed entry points at that moment (nothing is computed at import).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points

from robot_learning.errors import ConfigError

ENTRY_POINT_GROUP = "robot_learning.families"


@dataclass(frozen=True)
class Family:
    """One policy family.

    name: ``train --policy NAME``. policy: ``"module:Class"`` of the policy (a ``Policy``; a learned family's is a
    ``ChunkPolicy`` subclass with ``from_checkpoint``). help: one line for ``--help``. kind: what the checkpoint's
    ``config.json`` calls it (default: name; flow matching saves as the diffusion class it is). samplers: the
    ``--sampler`` choices (the first is the default; empty: no sampler). training: ``"module:Class"`` of its
    ``FamilyTraining`` (``robot_learning.training.families``), None for a wrapper that ``train`` cannot make
    (residual, steered). obs_steps: default To. lr: default peak learning rate. reads_language: the family always
    reads the episode's instruction. wrapper: it holds other policies in sub-folders and no weights of its own at
    the top of its folder.
    """

    name: str
    policy: str
    help: str
    kind: str | None = None
    samplers: tuple[str, ...] = ()
    training: str | None = None
    obs_steps: int = 2
    lr: float = 3e-4
    reads_language: bool = False
    wrapper: bool = False

    def __post_init__(self) -> None:
        for what, path in (("policy", self.policy), ("training", self.training)):
            if path is not None and (path.count(":") != 1 or not all(path.split(":"))):
                raise ConfigError.expected(f"family {self.name!r} {what}", "'module:Name'", repr(path))
        if not self.name or not self.name.replace("-", "_").isidentifier():
            raise ConfigError.expected("family name", "a word such as 'diffusion'", repr(self.name))

    @property
    def checkpoint_kind(self) -> str:
        return self.kind or self.name

    @property
    def trainable(self) -> bool:
        return self.training is not None

    def policy_class(self) -> type:
        return _resolve(self.policy, f"family {self.name!r} policy")

    def training_hooks(self):
        """A fresh ``FamilyTraining`` for one run (``train`` only)."""
        if self.training is None:
            raise ConfigError(f"--policy {self.name}: `train` cannot make a {self.name} policy ({self.help})")
        return _resolve(self.training, f"family {self.name!r} training")(self)


def _resolve(path: str, what: str):
    module, name = path.split(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{what} {path}: cannot be imported ({e})") from None


BUILTIN = (
    Family("diffusion", "robot_learning.policies.diffusion:DiffusionPolicy",
           "Diffusion Policy: DDPM over the action sequence, sampled with DDIM", samplers=("ddim", "ddpm", "edm"),
           training="robot_learning.training.families:DiffusionTraining", lr=1e-3),
    Family("flow", "robot_learning.policies.diffusion:DiffusionPolicy",
           "flow matching: a velocity field integrated in Euler steps", kind="diffusion", samplers=("euler",),
           training="robot_learning.training.families:FlowTraining", lr=1e-3),
    Family("act", "robot_learning.policies.act:ACTPolicy",
           "ACT: CVAE transformer over action chunks, temporal ensembling",
           training="robot_learning.training.families:ACTTraining", obs_steps=1),
    Family("ar", "robot_learning.policies.autoregressive:AutoregressivePolicy",
           "GPT over binned action tokens", samplers=("greedy", "sample"),
           training="robot_learning.training.families:ARTraining"),
    Family("carp", "robot_learning.policies.carp:CARPPolicy",
           "coarse-to-fine GPT over multi-scale VQ tokens (trains its tokenizer first unless --tokenizer)",
           samplers=("sample", "greedy"), training="robot_learning.training.families:CARPTraining"),
    Family("vla", "robot_learning.policies.vla:VLAPolicy",
           "vision encoder + language trunk, the instruction in, actions through token bins or a flow expert",
           samplers=("greedy", "sample", "euler"), training="robot_learning.training.families:VLATraining",
           obs_steps=1, reads_language=True),
    Family("residual", "robot_learning.policies.residual:ResidualPolicy",
           "a frozen base policy plus a residual network (finetune residual / rlpd)"),
    Family("steered", "robot_learning.policies.steered:SteeredPolicy",
           "value-guided choice among a base policy's sampled chunks (eval --steer)", wrapper=True),
)

_registered: dict[str, Family] = {}


def register(family: Family) -> None:
    """Add ``family`` for this process (an entry point adds it for every process)."""
    if not isinstance(family, Family):
        raise ConfigError.expected("register()", "a Family", type(family).__name__)
    if any(f.name == family.name for f in BUILTIN):
        raise ConfigError(f"family {family.name!r} is built in; choose another name")
    _registered[family.name] = family


def _from_entry_points() -> list[Family]:
    out = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:   # noqa: BLE001 - a broken plug-in is named, with its own error, in one line
            raise ConfigError(f"policy family entry point {ep.name} = {ep.value}: cannot be loaded "
                              f"({type(e).__name__}: {e})") from None
        fam = obj() if callable(obj) and not isinstance(obj, Family) else obj
        if not isinstance(fam, Family):
            raise ConfigError.expected(f"policy family entry point {ep.name} = {ep.value}", "a Family",
                                       type(fam).__name__)
        out.append(fam)
    return out


def families() -> dict[str, Family]:
    """Every family by name: built-in, then registered, then from entry points (a name taken is an error)."""
    out: dict[str, Family] = {f.name: f for f in BUILTIN}
    for fam in [*_registered.values(), *_from_entry_points()]:
        prev = out.get(fam.name)
        if prev is not None and prev != fam:
            raise ConfigError(f"policy family {fam.name!r} is defined twice ({prev.policy} and {fam.policy})")
        out[fam.name] = fam
    return out


def trainable_names() -> list[str]:
    return [n for n, f in families().items() if f.trainable]


def get_family(name: str, trainable: bool = False) -> Family:
    """The family called ``name`` (``trainable``: one that ``train`` makes); a typo gets a "did you mean"."""
    fams = families()
    names = [n for n, f in fams.items() if f.trainable or not trainable]
    if name in names:
        return fams[name]
    near = difflib.get_close_matches(str(name), names, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise ConfigError.expected("--policy", f"one of {', '.join(names)}", f"{name!r}{hint}")


def find_kind(kind: str) -> Family | None:
    """The family whose checkpoints say ``"policy": kind`` (the first registered: diffusion before flow), or None."""
    return next((fam for fam in families().values() if fam.checkpoint_kind == kind), None)


def family_for_kind(kind: str) -> Family:
    """``find_kind``, or a ConfigError listing the kinds there are."""
    fam = find_kind(kind)
    if fam is not None:
        return fam
    raise ConfigError.expected("checkpoint policy kind", f"one of {sorted({f.checkpoint_kind for f in families().values()})}",
                               repr(kind))


def sampler_names() -> tuple[str, ...]:
    """Every family's ``--sampler`` names (eval / serve accept any: the loaded policy checks its own)."""
    seen: dict[str, None] = {}
    for fam in families().values():
        seen.update(dict.fromkeys(fam.samplers))
    return tuple(seen)


def help_text() -> str:
    """One line per trainable family, for ``train --policy``'s help."""
    lines = []
    for fam in families().values():
        if fam.trainable:
            samp = f" [sampler: {' | '.join(fam.samplers)}]" if fam.samplers else ""
            lines.append(f"{fam.name}: {fam.help}{samp}")
    return "Policy family. " + "; ".join(lines) + "."
