"""Policy networks: denoiser shapes, gradient flow, learning, encoders and crops."""

from __future__ import annotations

import pytest
import torch

from robot_learning.policies.nets import (
    ConditionalUnet1D,
    DepthEncoder,
    EncoderConfig,
    InputSpec,
    ObservationEncoder,
    ResNetGN,
    SinusoidalEmbedding,
    SpatialSoftmax,
    StateEncoder,
    TactileEncoder,
    TransformerDenoiser,
    center_crop,
    image_to_unit,
    random_crop,
)


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _assert_all_grads(module: torch.nn.Module) -> None:
    missing = [n for n, p in module.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    for n, p in module.named_parameters():
        assert torch.isfinite(p.grad).all(), n


# ----------------------------------------------------------------------------- denoisers

def test_unet_shapes_and_timestep_forms() -> None:
    torch.manual_seed(0)
    net = ConditionalUnet1D(action_dim=8, cond_dim=2 * 20, down_dims=(32, 64, 128))
    x, cond = torch.randn(3, 16, 8), torch.randn(3, 2, 20)
    for t in (torch.tensor([1, 5, 9]), torch.tensor([0.1, -0.5, 1.3]), torch.tensor(4), 7, 0.25):
        out = net(x, t, cond)
        assert out.shape == (3, 16, 8)
        assert torch.isfinite(out).all()


def test_unet_rejects_bad_horizon_and_cond() -> None:
    net = ConditionalUnet1D(action_dim=8, cond_dim=40, down_dims=(32, 64, 128))
    with pytest.raises(ValueError, match="multiple of 4"):
        net(torch.randn(2, 10, 8), torch.zeros(2), torch.randn(2, 2, 20))
    with pytest.raises(ValueError, match="cond"):
        net(torch.randn(2, 16, 8), torch.zeros(2), torch.randn(2, 3, 20))
    with pytest.raises(ValueError, match="timestep"):
        net(torch.randn(2, 16, 8), torch.zeros(3), torch.randn(2, 2, 20))


def test_unet_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    net = ConditionalUnet1D(action_dim=8, cond_dim=40, down_dims=(32, 64, 128))
    out = net(torch.randn(2, 16, 8), torch.tensor([3, 50]), torch.randn(2, 2, 20))
    out.square().mean().backward()
    _assert_all_grads(net)


def test_unet_overfits_fixed_target() -> None:
    torch.manual_seed(0)
    net = ConditionalUnet1D(action_dim=2, cond_dim=6, down_dims=(16, 32), n_groups=4,
                            step_embed_dim=16)
    x, t, cond = torch.randn(8, 8, 2), torch.randint(0, 100, (8,)), torch.randn(8, 2, 3)
    target = torch.randn(8, 8, 2)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(net(x, t, cond), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_unet_paper_size_parameter_count() -> None:
    with torch.device("meta"):  # no memory, no init work
        net = ConditionalUnet1D(action_dim=8, cond_dim=2 * 20, down_dims=(256, 512, 1024))
    assert _n_params(net) == 63_565_192   # the paper's CNN (63M): any change of a layer shows here


def test_sinusoidal_embedding() -> None:
    emb = SinusoidalEmbedding(16)(torch.tensor([0.0, 1.0, 99.0]))
    assert emb.shape == (3, 16)
    assert torch.allclose(emb[0, :8], torch.zeros(8)) and torch.allclose(emb[0, 8:], torch.ones(8))
    with pytest.raises(ValueError):
        SinusoidalEmbedding(7)


def test_transformer_shapes_causality_and_grads() -> None:
    torch.manual_seed(0)
    net = TransformerDenoiser(action_dim=8, obs_dim=20, horizon=16, n_obs_steps=2, d_model=32,
                              n_heads=4, n_layers=2, dropout=0.0, causal=True)
    x, cond = torch.randn(3, 16, 8), torch.randn(3, 2, 20)
    out = net(x, torch.tensor([1, 2, 3]), cond)
    assert out.shape == (3, 16, 8) and torch.isfinite(out).all()
    assert net(x, 0.5, cond).shape == (3, 16, 8)
    # Causal: changing the last action token leaves earlier outputs unchanged.
    x2 = x.clone()
    x2[:, -1] += 1.0
    out2 = net(x2, torch.tensor([1, 2, 3]), cond)
    assert torch.allclose(out[:, :-1], out2[:, :-1], atol=1e-5)
    assert not torch.allclose(out[:, -1], out2[:, -1])
    out.square().mean().backward()
    _assert_all_grads(net)


def test_transformer_rejects_shape_mismatch() -> None:
    net = TransformerDenoiser(8, 20, 16, 2, d_model=32, n_heads=4, n_layers=1)
    with pytest.raises(ValueError, match=r"expected \(B, 16, 8\), found \(2, 12, 8\)"):
        net(torch.randn(2, 12, 8), torch.zeros(2), torch.randn(2, 2, 20))
    with pytest.raises(ValueError, match=r"expected \(2, 2, 20\), found \(2, 3, 20\)"):
        net(torch.randn(2, 16, 8), torch.zeros(2), torch.randn(2, 3, 20))
    with pytest.raises(ValueError, match="d_model"):
        TransformerDenoiser(8, 20, 16, 2, d_model=30, n_heads=4)


# ----------------------------------------------------------------------------- encoders

def test_spatial_softmax_range_and_bright_spot() -> None:
    ss = SpatialSoftmax(in_channels=1, num_kp=1)
    with torch.no_grad():
        ss.keypoint_conv.weight.fill_(5.0)
        ss.keypoint_conv.bias.zero_()
    img = torch.zeros(2, 1, 9, 9)
    img[:, :, 4, 0] = 3.0  # bright spot at the left edge, middle row
    kp = ss(img)
    assert kp.shape == (2, 2)
    assert (kp.abs() <= 1).all()
    assert (kp[:, 0] < -0.5).all()          # x pulled to the left
    assert kp[:, 1].abs().max() < 1e-5      # y stays centred
    rand = SpatialSoftmax(8, num_kp=4)(torch.randn(3, 8, 5, 7) * 10)
    assert rand.shape == (3, 8) and (rand.abs() <= 1 + 1e-6).all()


def test_crops() -> None:
    x = torch.arange(8 * 2 * 20 * 20, dtype=torch.float32).reshape(8, 2, 20, 20)
    gen = torch.Generator().manual_seed(0)
    crops = random_crop(x, 12, generator=gen)
    assert crops.shape == (8, 2, 12, 12)
    # Each crop is a contiguous window of its own sample; offsets differ between samples.
    offsets = set()
    for i in range(8):
        top, left = divmod(int(crops[i, 0, 0, 0].item()) - i * 800, 20)
        assert torch.equal(crops[i], x[i, :, top:top + 12, left:left + 12])
        offsets.add((top, left))
    assert len(offsets) > 1
    c1, c2 = center_crop(x, 12), center_crop(x, 12)
    assert torch.equal(c1, c2) and torch.equal(c1, x[:, :, 4:16, 4:16])
    with pytest.raises(ValueError):
        random_crop(x, 21)


def test_image_to_unit() -> None:
    img = torch.tensor([0, 255, 128], dtype=torch.uint8).reshape(1, 3, 1, 1)
    out = image_to_unit(img)
    assert out.dtype == torch.float32
    assert out.flatten()[0] == -1.0 and out.flatten()[1] == 1.0 and abs(out.flatten()[2]) < 0.01
    with pytest.raises(TypeError):
        image_to_unit(out)


def test_single_encoders() -> None:
    torch.manual_seed(0)
    resnet = ResNetGN(width=16, num_kp=8, out_dim=24)
    assert resnet(torch.randn(2, 3, 40, 40)).shape == (2, 24) and resnet.out_dim == 24
    with pytest.raises(ValueError, match="33 px"):  # 1x1 final map: keypoints would be constant
        resnet(torch.randn(2, 3, 32, 32))
    depth = DepthEncoder(max_depth_m=1.5, width=8, out_dim=12)
    d = torch.rand(2, 1, 40, 40) * 3.0
    d[0, 0, 0, 0] = float("nan")
    out = depth(d)
    assert out.shape == (2, 12) and torch.isfinite(out).all()
    tactile = TactileEncoder((4, 4, 3), hidden=16, out_dim=10)
    assert tactile(torch.randn(5, 4, 4, 3)).shape == (5, 10) and tactile.out_dim == 10
    with pytest.raises(ValueError):
        tactile(torch.randn(5, 4, 3, 4))
    state = StateEncoder(7)
    s = torch.randn(3, 7)
    assert state.out_dim == 7 and torch.equal(state(s), s)


def _specs() -> list[InputSpec]:
    return [
        InputSpec("obs.wrist_rgb", "rgb", (3, 48, 48)),
        InputSpec("obs.joint_pos_rad", "state", (6,)),
        InputSpec("obs.depth_m", "depth", (44, 44)),
        InputSpec("obs.tactile", "tactile", (2, 4, 4)),
    ]


def _obs(b: int, to: int) -> dict[str, torch.Tensor]:
    return {
        "obs.wrist_rgb": torch.randint(0, 256, (b, to, 3, 48, 48), dtype=torch.uint8),
        "obs.joint_pos_rad": torch.randn(b, to, 6),
        "obs.depth_m": torch.rand(b, to, 44, 44) * 2.0,
        "obs.tactile": torch.randn(b, to, 2, 4, 4),
    }


def test_observation_encoder_shapes_and_errors() -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig(image_width=8, image_kp=4, image_out_dim=16, depth_out_dim=8,
                        tactile_out_dim=5)
    enc = ObservationEncoder(_specs(), cfg)
    assert enc.out_dim == 16 + 6 + 8 + 5
    obs = _obs(3, 2)
    out = enc(obs)
    assert out.shape == (3, 2, enc.out_dim) and torch.isfinite(out).all()
    # State passes through, in input order (after the rgb features).
    assert torch.equal(out[..., 16:22], obs["obs.joint_pos_rad"])
    out.square().mean().backward()
    _assert_all_grads(enc)

    with pytest.raises(KeyError, match="obs.tactile"):
        enc({k: v for k, v in obs.items() if k != "obs.tactile"})
    bad = dict(obs, **{"obs.joint_pos_rad": torch.randn(3, 2, 5)})
    with pytest.raises(ValueError, match=r"expected \('B', 'To', 6\), found \(3, 2, 5\)"):
        enc(bad)


def test_observation_encoder_train_vs_eval_crop(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = ObservationEncoder(_specs(), EncoderConfig(image_width=8, image_kp=4))
    assert enc.crop_sizes == {"obs.wrist_rgb": 38, "obs.depth_m": 35}  # floor(0.8 * side)
    assert ObservationEncoder([InputSpec("cam", "rgb", (3, 96, 96))]).crop_sizes["cam"] == 76
    seen: list[tuple[str, tuple[int, ...]]] = []
    for key in ("in_obs_wrist_rgb", "in_obs_depth_m"):
        module = enc.encoders[key]
        module.register_forward_pre_hook(
            lambda m, args, key=key: seen.append((key, tuple(args[0].shape))))
    obs = _obs(2, 2)
    enc.train()
    enc(obs)
    assert seen == [("in_obs_wrist_rgb", (4, 3, 38, 38)), ("in_obs_depth_m", (4, 1, 35, 35))]
    # Eval: deterministic centre crops.
    enc.eval()
    seen.clear()
    with torch.no_grad():
        a, b = enc(obs), enc(obs)
    assert torch.equal(a, b)
    assert seen[0] == ("in_obs_wrist_rgb", (4, 3, 38, 38))
    # Training crops are random: two passes differ.
    enc.train()
    with torch.no_grad():
        assert not torch.equal(enc(obs), enc(obs))
    custom = ObservationEncoder(_specs(), EncoderConfig(image_width=8, crop_px=40))
    assert custom.crop_sizes == {"obs.wrist_rgb": 40, "obs.depth_m": 40}
    with pytest.raises(ValueError):
        ObservationEncoder(_specs(), EncoderConfig(crop_px=45))  # larger than the 44 px depth
