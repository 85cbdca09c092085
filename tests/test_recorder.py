"""Episode store and recorder: round trip, readers during writes, and the kill test."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robot_learning.datasets.recorder import Recorder, schema_for
from robot_learning.datasets.scripted import record_expert_episodes
from robot_learning.datasets.store import EpisodeStore
from robot_learning.datasets.verify import verify
from robot_learning.errors import ConfigError
from robot_learning.runtime.control import ControlRuntime, RuntimeConfig
from robot_learning.runtime.sources import FunctionSource
from robot_learning.sim.env import SimEnv, SimEnvConfig
from robot_learning.sim.experts import make_expert

EXE = str(Path(sys.executable).with_name("robot-learning"))


def _record(env, store, episodes, seed0=0):
    """Record scripted episodes; returns the front-camera frames each tick observed, to compare
    with what the store gives back."""
    frames = []

    class Grab:
        def on_tick(self, tick):
            frames.append(tick.observation.rgb["front_rgb"].copy())

        def close(self):
            pass

    rec = Recorder(store, env.sensors)
    record_expert_episodes(env, rec, range(seed0, seed0 + episodes), sinks=(Grab(),), keep_failures=True)
    rec.shutdown()
    return frames


def test_round_trip_lossless_multirate(tmp_path):
    env = SimEnv(SimEnvConfig(task="lift", cameras=("front",), image_size=48, camera_fps=30.0, tactile=True))
    schema = schema_for(env.robot.state_features, env.sensors, env.robot.action_features, 10.0, image_codec="png")
    store = EpisodeStore.create(tmp_path / "d.zarr", schema)
    frames = _record(env, store, 2)
    env.close()
    r = EpisodeStore.open(tmp_path / "d.zarr")
    assert len(r.episodes) == 2 and verify(r) == []
    ticks = np.concatenate([r.ticks(ep)["front_rgb.row"] for ep in r.episodes])
    assert np.all(ticks >= 0)
    np.testing.assert_array_equal(r.read("front_rgb", "front_rgb", ticks), np.stack(frames))  # lossless PNG
    ep = r.episodes[0]
    cam_t = r.stream_times(ep, "front_rgb")
    assert abs(np.mean(np.diff(cam_t)) - 1e9 / 30) < 1e6  # 30 Hz camera stored at its own rate
    assert np.all(np.diff(r.ticks(ep)["t_ns"]) == 100_000_000)  # 10 Hz ticks
    with pytest.raises(Exception, match="rows"):
        r.read("front_rgb", "front_rgb", np.array([10**6]))


def test_reader_sees_only_committed_episodes_and_reopen_discards_tail(tmp_path):
    env = SimEnv(SimEnvConfig(task="lift", cameras=("front",), image_size=32, camera_fps=30.0))
    schema = schema_for(env.robot.state_features, env.sensors, env.robot.action_features, 10.0)
    store = EpisodeStore.create(tmp_path / "d.zarr", schema)
    _record(env, store, 1)
    # a writer appends rows of a new episode without committing it (then "dies")
    t, rows, nbytes = store.lengths()
    store.append_ticks(np.array([10**12]), {a.name: np.zeros((1, *a.shape), a.dtype)
                                            for a in schema.action_features},
                       np.zeros(1, bool), np.zeros(1, bool), {s.name: np.array([-1]) for s in schema.streams})
    reader = EpisodeStore.open(tmp_path / "d.zarr")
    assert len(reader.episodes) == 1 and verify(reader) == []
    appender = EpisodeStore.open(tmp_path / "d.zarr", mode="a")
    assert appender.recovery.discarded_ticks == 1 and appender.lengths()[0] == t
    with pytest.raises(ConfigError, match="does not exist yet"):
        EpisodeStore.create(tmp_path / "d.zarr", schema)
    with pytest.raises(ConfigError, match="robot-learning zarr store"):
        EpisodeStore.open(tmp_path / "nothing.zarr")
    env.close()


def _digest(store: EpisodeStore, upto: int) -> list[str]:
    out = []
    for ep in store.episodes[:upto]:
        h = hashlib.sha256()
        for k, v in sorted(store.ticks(ep).items()):
            h.update(k.encode() + np.ascontiguousarray(v).tobytes())
        h.update(store.read("front_rgb", "front_rgb", slice(*ep.streams["front_rgb"])).tobytes())
        out.append(h.hexdigest())
    return out


def test_kill_test_sigkill_at_random_moments(tmp_path):
    """SIGKILL the recorder at random moments; after each: verify passes, completed episodes are
    intact, and recording resumes into the same dataset. 5 kills (~2 episodes each: start-up, recording and
    commits all get hit); RL_KILL_TEST_KILLS=100 for a longer hunt (each kill re-reads every episode so far)."""
    kills = int(os.environ.get("RL_KILL_TEST_KILLS", "5"))
    path = tmp_path / "killed.zarr"
    rng = np.random.default_rng(1234)
    env = {**os.environ, "MUJOCO_GL": "egl"}
    cmd = [EXE, "record", "--dataset", str(path), "--robot", "sim:lift", "--episodes", "1000",
           "--image-size", "32", "--cameras", "front", "--no-tactile"]
    digests: list[str] = []
    history: list[int] = []
    slow, k = 1.0, 0   # on a busy host start-up takes longer: a kill that lands before any new commit stretches the next
    while k < kills or not history or history[-1] < 3:
        assert k < 6 * kills, f"too few episodes recorded across {k} kills: {history}"
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        time.sleep(float(rng.uniform(1.2, 3.0)) * slow)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        k += 1
        if not path.exists():
            slow *= 1.5
            continue  # killed before the store was created
        store = EpisodeStore.open(path, mode="a")  # recovers the partial episode
        problems = verify(store)
        assert problems == [], f"after kill {k}: {problems}"
        n = len(store.episodes)
        assert n >= len(digests), "committed episodes disappeared"
        assert _digest(store, len(digests)) == digests, f"after kill {k}: an earlier episode changed"
        if n == len(digests):
            slow *= 1.5
        digests = _digest(store, n)
        history.append(n)
    print(f"\nepisodes committed after each kill: {history}")
    # and a clean run resumes into the same dataset
    r = subprocess.run(cmd[:7] + ["2"] + cmd[8:], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["episodes"] == history[-1] + 2
    final = EpisodeStore.open(path)
    assert verify(final) == [] and _digest(final, len(digests)) == digests


def test_round_trip_cli_record_replay_info_and_edit(tmp_path):
    env = {**os.environ, "MUJOCO_GL": "egl"}

    def rl(*args):
        r = subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stdout

    d = tmp_path / "demo.zarr"
    rl("record", "--dataset", d, "--robot", "sim:lift", "--episodes", "5", "--image-size", "48")
    replay = json.loads(rl("dataset", "replay", d, "--episode", "-1", "--json"))["episodes"]
    assert len(replay) == 5
    for r in replay:  # same seed, same executed actions: the sim reproduces the recorded trajectory
        assert r["tracking_error_rad"]["max"] < 1e-3 and r["replayed_success"]
    info = json.loads(rl("dataset", "info", d, "--json"))
    assert info["episodes"] == 5 and info["fps"] == 10.0 and info["dropped_ticks"] == 0
    assert abs(info["streams"]["front_rgb"]["measured_rate_hz"] - 30) < 1.5
    assert {f["name"] for f in info["streams"]["robot"]["features"]} >= {"joint_pos_rad", "gripper_pos"}
    rl("dataset", "view", d, "--episode", "1", "--out", tmp_path / "ep1.mp4")
    assert (tmp_path / "ep1.mp4").stat().st_size > 1000
    rl("dataset", "split", d, "--out-a", tmp_path / "a.zarr", "--out-b", tmp_path / "b.zarr", "--fraction", "0.6")
    rl("dataset", "merge", tmp_path / "b.zarr", tmp_path / "a.zarr", "--out", tmp_path / "m.zarr")
    rl("dataset", "delete-episode", tmp_path / "m.zarr", "--index", "0")
    m = EpisodeStore.open(tmp_path / "m.zarr")
    src = EpisodeStore.open(d)
    assert len(m.episodes) == 4 and verify(m) == []
    # merged order: b (episodes 3, 4) then a (0, 1, 2); episode 0 of m (source 3) was deleted
    assert [e.seed for e in m.episodes] == [4, 0, 1, 2]
    np.testing.assert_array_equal(m.read("front_rgb", "front_rgb", slice(*m.episodes[1].streams["front_rgb"])),
                                  src.read("front_rgb", "front_rgb", slice(*src.episodes[0].streams["front_rgb"])))
    bad = subprocess.run([EXE, "dataset", "info", tmp_path / "missing.zarr"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_disk_full_gives_one_clear_line_and_keeps_committed_episodes(tmp_path):
    """Record onto a 1.5 MB tmpfs until it is full, ~5 episodes in (needs root to mount; skipped otherwise)."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        d = small / "d.zarr"
        env = {**os.environ, "MUJOCO_GL": "egl"}
        r = subprocess.run([EXE, "record", "--dataset", str(d), "--robot", "sim:lift", "--episodes", "200",
                            "--image-size", "64"], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 1, (r.returncode, r.stderr[-2000:])   # a failed write (StorageError), not a config
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("robot-learning: error:") and "No space left" in last and "intact" in last
        assert "Traceback" not in r.stderr
        store = EpisodeStore.open(d)  # read-only: needs no space
        assert len(store.episodes) >= 1 and verify(store) == []
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


def test_live_view_draws_into_a_real_x_display(tmp_path):
    import shutil as _sh

    if _sh.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (make install installs it as root)")
    display = ":57"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        env = {**os.environ, "MUJOCO_GL": "egl", "DISPLAY": display}
        r = subprocess.run([EXE, "record", "--dataset", str(tmp_path / "v.zarr"), "--episodes", "1", "--view",
                            "--image-size", "48"], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr[-1500:]
        # and the view itself, in-process, counts the frames it drew
        os.environ["DISPLAY"] = display
        from robot_learning.datasets.live_view import LiveView
        sim = SimEnv(SimEnvConfig(task="lift", cameras=("front", "wrist"), image_size=48))
        view = LiveView(max_fps=1000)
        expert = make_expert(sim)
        obs = sim.reset(0)
        expert.reset(obs, 0)
        rt = ControlRuntime(sim.robot, FunctionSource(expert.act, sim.robot.action_features, sim.world.clock),
                            RuntimeConfig(rate_hz=10), sensors=sim.sensors, sinks=[view], clock=sim.world.clock)
        rt.run(max_ticks=5)
        assert view.frames_shown == 5
        view.destroy()
        sim.close()
    finally:
        os.environ.pop("DISPLAY", None)
        xvfb.terminate()
        xvfb.wait(timeout=10)
    r = subprocess.run([EXE, "record", "--dataset", str(tmp_path / "n.zarr"), "--view"], capture_output=True,
                       text=True, env={k: v for k, v in os.environ.items() if k != "DISPLAY"}, timeout=60)
    assert r.returncode == 2 and "needs a display" in r.stderr and not (tmp_path / "n.zarr").exists()


def test_rerun_export_reads_back_with_every_stream(tmp_path):
    from rerun.chunk import RrdReader

    from robot_learning.datasets.rerun_export import export_rrd

    env = SimEnv(SimEnvConfig(task="lift", cameras=("front",), image_size=32, camera_fps=30.0))
    schema = schema_for(env.robot.state_features, env.sensors, env.robot.action_features, 10.0)
    store = EpisodeStore.create(tmp_path / "d.zarr", schema)
    _record(env, store, 1)
    env.close()
    store = EpisodeStore.open(tmp_path / "d.zarr")
    ep = store.episodes[0]
    out = export_rrd(store, 0, tmp_path / "ep.rrd")
    rows = {}
    for line in str(RrdReader(out).store().summary()).splitlines():
        path, _, rest = line.partition(" rows=")
        if rest:
            rows[path] = rows.get(path, 0) + int(rest.split()[0])  # one line per chunk
    assert rows["/front_rgb/front_rgb"] == ep.streams["front_rgb"][1] - ep.streams["front_rgb"][0]
    assert rows["/robot/joint_pos_rad/joint1"] == ep.streams["robot"][1] - ep.streams["robot"][0]
    assert rows["/action/joint_pos_rad/joint7"] == ep.length
    with pytest.raises(ConfigError, match=r"\.rrd"):
        export_rrd(store, 0, tmp_path / "ep.mp4")


def test_episode_without_a_single_observed_tick_is_not_committed(tmp_path):
    """Every tick stale (a camera that never delivered): end_episode(keep=True) keeps nothing, and the store
    stays readable (an empty episode once made every later read fail)."""
    from robot_learning.core import FakeClock
    from robot_learning.hardware.emulated_arm import EmulatedArm

    from support.emulated_devices import PatternCamera

    clock = FakeClock()
    arm, cam = EmulatedArm(clock=clock), PatternCamera(clock=clock)
    schema = schema_for(arm.state_features, (cam,), arm.action_features, 50.0)
    store = EpisodeStore.create(tmp_path / "d.zarr", schema)
    rec = Recorder(store, (cam,))
    with arm, cam:
        rt = ControlRuntime(arm, FunctionSource(lambda o: None, arm.action_features, clock), RuntimeConfig(50.0),
                            sensors=(cam,), sinks=(rec,), clock=clock)
        rec.start_episode()
        stats = rt.run(max_ticks=5)
        assert stats.stale_sensor_ticks == 5
        assert rec.end_episode(keep=True, task="x") is None
    rec.shutdown()
    r = EpisodeStore.open(tmp_path / "d.zarr")
    assert r.episodes == [] and verify(r) == []
