"""MP4 writing through PyAV (H.264). OpenCV cannot write H.264 here; PyAV ships its own FFmpeg."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_learning.errors import ConfigError


class VideoWriter:
    """``with VideoWriter(path, fps) as w: w.write(rgb_uint8_hw3)``. Size is taken from the first
    frame (rounded down to even numbers, as yuv420p needs)."""

    def __init__(self, path: str | Path, fps: float, crf: int = 23, preset: str = "veryfast"):
        if not fps > 0:
            raise ConfigError.expected("video fps", "> 0", fps)
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise ConfigError.expected("video file", "a path ending in .mp4", str(path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps, self.crf, self.preset = fps, crf, preset
        self._container = None
        self._stream = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ConfigError.expected("video frame", "(H, W, 3) uint8", f"{frame.shape} {frame.dtype}")
        if self._container is None:
            h, w = (frame.shape[0] // 2) * 2, (frame.shape[1] // 2) * 2
            from fractions import Fraction
            self._container = av.open(str(self.path), mode="w")
            self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1000))
            self._stream.width, self._stream.height = w, h
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf), "preset": self.preset}
        s = self._stream
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:s.height, :s.width]), format="rgb24")
        for packet in s.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
