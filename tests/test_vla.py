"""The vision-language-action policy: both action heads train through the CLI on camera + state + instruction
observations, resume, reload in a fresh process with identical actions, evaluate; real local transformers folders
(a trunk and a vision tower saved here with save_pretrained) load, stay frozen, and their LoRA adapter saves and
loads with peft itself."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from robot_learning.errors import ConfigError
from robot_learning.sim.env import SimEnv, SimEnvConfig
from support.sim_recordings import run_cli

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from robot_learning.policies.checkpoint import load_policy
    from robot_learning.sim.env import SimEnv, SimEnvConfig

    torch.set_num_threads(int(sys.argv[3]))
    policy = load_policy(sys.argv[1])
    with SimEnv(SimEnvConfig(task="lift_color", cameras=("front",), image_size=64)) as env:
        obs = env.reset(100_000)
        policy.reset(7)
        a = np.stack([policy.infer(obs).actions for _ in range(2)])
    np.save(sys.argv[2], a)
""")


@pytest.fixture(scope="module")
def camera_demos(tmp_path_factory):
    from robot_learning.datasets.scripted import record_sim_dataset

    path = tmp_path_factory.mktemp("vla") / "lift_color_front.zarr"
    with SimEnv(SimEnvConfig(task="lift_color", cameras=("front",), image_size=64)) as env:
        record_sim_dataset(env, path, [0, 2], keep_failures=True)
    return path


def _actions(policy, seed=7):
    with SimEnv(SimEnvConfig(task="lift_color", cameras=("front",), image_size=64)) as env:
        obs = env.reset(100_000)
        policy.reset(seed)
        return np.stack([policy.infer(obs).actions for _ in range(2)])


@pytest.mark.parametrize("head", ["bins", "flow"])
def test_vla_trains_resumes_reloads_in_a_fresh_process_and_evaluates(camera_demos, head, tmp_path):
    from robot_learning.policies.checkpoint import load_policy

    run = tmp_path / "run"
    base = ["train", "--dataset", str(camera_demos), "--out", str(run), "--policy", "vla", "--vla-head", head,
            "--obs", "state,rgb", "--batch-size", "4", "--eval-episodes", "0", "--no-progress"]
    rc, out = run_cli(*base, "--steps", "2")
    assert rc == 0 and "'task'" in out and "front_rgb" in out, out     # the instruction joins by itself
    rc, out = run_cli(*base, "--steps", "3", "--resume")
    assert rc == 0 and "trained 3 steps" in out
    pol = load_policy(run)
    assert pol.kind == "vla" and pol.config.head == head and pol.vision is not None
    assert pol.config.sentence_token and pol.sentence_proj is not None   # a config-built trunk: on by default
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.policies.text import embed

    # fitted on the demos' instructions: centred on their mean, scaled to unit RMS (recomputed here)
    raw = embed(sorted({e.task for e in EpisodeStore.open(camera_demos).episodes}))
    assert len(raw) == 2 and "text_mean" in pol.state_dict()
    np.testing.assert_allclose(pol.text_mean.numpy(), raw.mean(0), atol=1e-6)
    assert float(pol.text_scale) == pytest.approx(1 / np.sqrt(((raw - raw.mean(0)) ** 2).mean()), rel=1e-5)
    with SimEnv(SimEnvConfig(task="lift_color", cameras=("front",), image_size=64)) as sim:
        per_text = []
        for text in ("pick up the red cube", "pick up the blue cube"):
            pol.reset(7)
            per_text.append(pol.infer(sim.reset(100_000, instruction=text)).actions)
    assert not np.array_equal(*per_text)                                 # the instruction reaches the actions
    here = _actions(pol)
    with torch.no_grad():                                                # ... and the sentence token is one way in
        saved = {k: v.clone() for k, v in pol.sentence_proj.state_dict().items()}
        pol.sentence_proj.weight.zero_()
        pol.sentence_proj.bias.zero_()
        assert not np.array_equal(_actions(pol), here)
        pol.sentence_proj.load_state_dict(saved)
    assert np.array_equal(_actions(pol), here)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "egl"}
    r = subprocess.run([sys.executable, "-c", CHILD, str(run), str(tmp_path / "a.npy"), str(torch.get_num_threads())],
                       capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(tmp_path / "a.npy"), here) and np.all(np.isfinite(here))
    rc, out = run_cli("eval", "--checkpoint", str(run), "--episodes", "1", "--videos", "0", "--out", str(tmp_path / "e"))
    assert rc == 0 and "lift_color" in out
    with SimEnv(SimEnvConfig(task="lift_color", cameras=("front",), image_size=64)) as sim:
        obs = sim.reset(5)
    samples, _ = pol.sample_chunks(obs, 3)
    assert samples.shape == (3, 8, 8) and not np.array_equal(samples[0], samples[1])
    if head == "flow":   # served over a real socket, the instruction a string in the message
        from robot_learning.deploy.client import PolicyClient
        from robot_learning.deploy.server import PolicyServer

        with PolicyServer(load_policy(run), port=0) as server, PolicyClient(f"ws://127.0.0.1:{server.port}") as pc:
            assert "task" in pc.spec()["observation_features"][-1]["name"]
            pc.reset(4)
            got = pc.infer(dict(obs.values), obs.t_ns)
        pol.reset(4)
        np.testing.assert_allclose(got.actions, pol.infer(obs).actions, rtol=1e-5, atol=1e-6)


def _tiny_folders(d):
    from transformers import LlamaConfig, LlamaForCausalLM, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(3)
    LlamaForCausalLM(LlamaConfig(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=4)).save_pretrained(d / "trunk")
    SiglipVisionModel(SiglipVisionConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=64)).save_pretrained(d / "vision")
    return d / "trunk", d / "vision"


def test_vla_loads_local_weights_freezes_them_and_its_lora_adapter_round_trips(camera_demos, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from robot_learning.policies.checkpoint import load_policy

    trunk_dir, vision_dir = _tiny_folders(tmp_path)
    run = tmp_path / "run"
    rc, out = run_cli("train", "--dataset", str(camera_demos), "--out", str(run), "--policy", "vla",
                      "--vla-trunk", str(trunk_dir), "--vla-vision", str(vision_dir), "--lora-rank", "4",
                      "--obs", "state,rgb", "--steps", "3", "--batch-size", "4", "--lr", "1e-2",
                      "--eval-episodes", "0", "--no-progress")
    assert rc == 0, out
    pol = load_policy(run)
    assert pol.config.lora_rank == 4 and pol.image_size == 32          # the folder's image size: frames resized
    assert not pol.config.sentence_token                               # a real trunk reads the instruction itself
    saved = load_file(str(run / "policy/model.safetensors"))
    assert not any(k.startswith("vision.") for k in saved)             # frozen copies of the folders stay there
    assert any("lora_" in k for k in saved) and not any(k.startswith("trunk.") and "lora_" not in k for k in saved)
    original = load_file(str(trunk_dir / "model.safetensors"))
    sd = pol.trunk.get_base_model().state_dict()
    for k, v in original.items():                                      # the base trunk is the folder's, untouched
        stem, leaf = k.rsplit(".", 1)
        assert torch.equal(sd[k] if k in sd else sd[f"{stem}.base_layer.{leaf}"], v), k
    lora = [v for k, v in pol.trunk.state_dict().items() if "lora_B" in k]
    assert any(v.abs().sum() > 0 for v in lora)                        # the adapter trained (B starts at zero)
    assert (run / "policy/adapter/adapter_config.json").is_file()
    fresh = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(trunk_dir)),
                                      str(run / "policy/adapter")).eval()
    ids = torch.randint(3, 500, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(fresh(input_ids=ids).logits, pol.trunk(input_ids=ids).logits)
    assert np.array_equal(_actions(pol), _actions(load_policy(run)))
    cfg = json.loads((run / "policy/config.json").read_text())
    cfg["config"]["vla"]["trunk_path"] = str(tmp_path / "gone")
    (run / "policy/config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="--vla-trunk .*gone: expected a local transformers folder"):
        load_policy(run)


@pytest.mark.parametrize("head", ["bins", "flow"])
def test_vla_training_lowers_the_loss_on_a_fixed_batch(camera_demos, head):
    from robot_learning.datasets.dense import DenseWindows
    from robot_learning.datasets.sampler import WindowSampler
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.training.config import TrainConfig
    from robot_learning.training.language import WithInstructions
    from robot_learning.training.trainer import prepare

    cfg = TrainConfig(dataset=camera_demos, out=camera_demos.parent / f"unused-{head}", policy="vla", vla_head=head,
                      obs="state,rgb")
    store, sampler, pol, _ = prepare(cfg, torch.device("cpu"))
    assert isinstance(sampler, WindowSampler) and isinstance(store, EpisodeStore)
    data = WithInstructions(DenseWindows(sampler), sampler, store, pol)
    batch = data.batch(torch.arange(8))
    torch.manual_seed(0)
    opt = torch.optim.Adam([p for p in pol.parameters() if p.requires_grad], lr=1e-3)
    first = pol.compute_loss(batch).item()
    for _ in range(25):
        loss = pol.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first
