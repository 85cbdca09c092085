"""``robot-learning record`` on a real servo-bus arm (so101, koch): the rig (arm, teleop device, cameras) runs
through the control runtime into the recorder, one episode after another.

An episode ends after ``--episode-s`` or at the teleop's next / re-record / stop event; the runtime then holds the
robot, and for ``--reset-s`` the operator resets the scene (a countdown on stderr; no bus traffic is needed: a
Dynamixel bus watchdog that trips meanwhile is re-armed by the arm on its next bus access). Ctrl-C discards the
unfinished episode; a device fault or SIGTERM keeps the episode so far, with a note, and then ends the command.
"""

from __future__ import annotations

import math
import sys
import time

from robot_learning.cli.commands import RecordConfig
from robot_learning.cli.record_cmds import open_view, report
from robot_learning.errors import DeviceError, StorageError
from robot_learning.hardware.teleop import EpisodeEvent
from robot_learning.runtime.sources import TeleopSource


def reset_pause(seconds: float, next_episode: int, episodes: int, stream=None) -> None:
    """Sleep ``seconds`` with a countdown on ``stream`` (default stderr); the runtime left the robot held."""
    stream = stream if stream is not None else sys.stderr
    end = time.monotonic() + seconds
    shown = None
    while (left := end - time.monotonic()) > 0:
        whole = math.ceil(left)
        if whole != shown:
            shown = whole
            print(f"\rreset the scene: episode {next_episode}/{episodes} starts in {whole:3d} s   ", end="",
                  file=stream, flush=True)
        time.sleep(min(left, 0.05))


def run_record_real(cfg: RecordConfig) -> int:
    from robot_learning.datasets.recorder import Recorder, open_store, schema_for
    from robot_learning.rig import open_rig

    rig = open_rig(cfg.rig)
    recorder, view = None, None
    progress = {"episode": 0, "recorder": None}
    try:  # devices and the display first: a missing one must not leave an empty dataset behind
        view = open_view(cfg, progress)
        schema = schema_for(rig.robot.state_features, tuple(rig.sensors), rig.robot.action_features, rig.rate_hz,
                            rig.info, "png" if cfg.lossless else "jpeg")
        recorder = Recorder(open_store(cfg.dataset, schema), tuple(rig.sensors))
        progress["recorder"] = recorder
        sinks = [recorder] + ([view] if view is not None else [])
        t0 = time.perf_counter()
        kept = _episodes(cfg, rig, recorder, sinks, progress, t0)
    except BaseException:
        _close(recorder, view, rig, failing=True)   # the error in flight is the one to report
        raise
    _close(recorder, view, rig)
    return report(cfg, kept, t0)


def _close(recorder, view, rig, failing: bool = False) -> None:
    """Recorder (an unfinished episode is discarded), view, then the rig (torque off); every step runs."""
    errors = []
    for step in (recorder.shutdown if recorder is not None else None, view.destroy if view is not None else None,
                 rig.close):
        if step is None:
            continue
        try:
            step()
        except BaseException as e:  # noqa: BLE001 - close everything (a 2nd Ctrl-C too), then report the first
            errors.append(e)
    if errors and not failing:
        raise errors[0]


def _episodes(cfg: RecordConfig, rig, recorder, sinks, progress: dict, t0: float) -> int:
    """Record up to ``cfg.episodes`` episodes; the number kept."""
    task = cfg.rig.task or ""
    notes = f"{cfg.rig.teleop} teleop"
    kept, i = 0, 0
    try:
        while i < cfg.episodes:
            progress["episode"] = i
            events: list[EpisodeEvent] = []

            def should_stop(tick, events=events) -> bool:
                events.extend(rig.teleop.poll_events())
                return bool(events)

            # Plain teleop: every tick is the human's, none is a takeover from a policy.
            runtime = rig.runtime(TeleopSource(rig.teleop, report_intervention=False), sinks, task=cfg.rig.task)
            length = f"{cfg.episode_s:g} s" if cfg.episode_s is not None else "until the teleop's next / stop"
            print(f"\repisode {i + 1}/{cfg.episodes}: recording ({length}){' ' * 20}", end="", file=sys.stderr,
                  flush=True)
            recorder.start_episode()
            try:
                stats = runtime.run(duration_s=cfg.episode_s, should_stop=should_stop)
            except (DeviceError, SystemExit) as e:
                # The runtime held the robot; keep what was recorded up to a fault or a SIGTERM, marked as such.
                why = f"a device fault: {e}" if isinstance(e, DeviceError) else f"signal (exit {e})"
                rec = recorder.end_episode(keep=True, task=task, operator_notes=f"{notes}; ended by {why}")
                if rec is not None:
                    print(f"\nthe episode up to here is kept in {cfg.dataset} (episode {rec.index})", file=sys.stderr)
                raise
            if stats.interrupted:    # Ctrl-C ended the run: the episode is unfinished
                raise KeyboardInterrupt
            rerecord = EpisodeEvent.RERECORD in events
            rec = recorder.end_episode(keep=not rerecord, task=task, seed=None, operator_notes=notes)
            kept += int(rec is not None)
            status = "discarded: re-record" if rerecord else "kept"
            print(f"\repisode {i + 1}/{cfg.episodes}  {status}  ticks {stats.loop.ticks}  holds {stats.holds}  "
                  f"drops {recorder.dropped}  {time.perf_counter() - t0:.1f} s{' ' * 10}", end="", file=sys.stderr,
                  flush=True)
            if EpisodeEvent.STOP in events:
                break
            if not rerecord:
                i += 1
            if i < cfg.episodes and cfg.reset_s > 0:
                print(file=sys.stderr)
                reset_pause(cfg.reset_s, i + 1, cfg.episodes)
    except KeyboardInterrupt:
        print("\ninterrupted: the unfinished episode is discarded; earlier episodes are intact", file=sys.stderr)
    except OSError as e:
        print(file=sys.stderr)  # end the status line
        raise StorageError(f"writing {cfg.dataset} failed ({e.strerror or e}); episodes committed before are intact") \
            from None
    return kept
