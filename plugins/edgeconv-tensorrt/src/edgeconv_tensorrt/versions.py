"""TensorRT versions: parsing, and what each supported version can do.

Everything here is data about *documented* behaviour (sources in ``data/onnx_operators.json``
and docs/targets/tensorrt.md), so that a build for a Jetson can be prepared on a host that
has no TensorRT at all: the target version is then ``-O target_trt=10.3`` (JetPack 6.x).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeconv.plugin import BadInput

# JetPack 6.1/6.2 ship TensorRT 10.3 (CUDA 12.6); JetPack 5.1.x ships TensorRT 8.5.2.
DEFAULT_TARGET = "10.3"
SUPPORTED = ("8.5", "8.6", "10.x", "11.x")

_VERSION_RE = re.compile(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?\s*$")


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int = 0
    patch: int = 0
    build: int | None = None

    @classmethod
    def parse(cls, text: str, *, what: str = "TensorRT version") -> TrtVersion:
        m = _VERSION_RE.match(str(text))
        if not m:
            raise BadInput(f"{what} {text!r} is not MAJOR.MINOR[.PATCH] (e.g. 10.3 or 8.6.1)", stage="options")
        major, minor, patch, build = (int(g) if g is not None else None for g in m.groups())
        version = cls(major, minor or 0, patch or 0, build)
        if version.major < 8 or (version.major == 8 and version.minor < 5):
            raise BadInput(
                f"{what} {text}: TensorRT older than 8.5 is not supported (supported: {', '.join(SUPPORTED)}); "
                "JetPack 5.1 ships 8.5, JetPack 6 ships 10.3",
                stage="options",
            )
        return version

    @classmethod
    def from_banner(cls, number: int) -> TrtVersion:
        """``trtexec`` prints ``[TensorRT v8601]`` (8.6.1) or ``[TensorRT v100300]`` (10.3.0)."""
        if number >= 100000:
            return cls(number // 10000, (number // 100) % 100, number % 100)
        return cls(number // 1000, (number // 100) % 10, number % 100)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        return text if self.build is None else f"{text}.{self.build}"

    @property
    def short(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, major: int, minor: int = 0) -> bool:
        return (self.major, self.minor) >= (major, minor)

    # -- documented capabilities ------------------------------------------------------
    @property
    def opset_range(self) -> tuple[int, int]:
        """ONNX opsets the parser documents (onnx-tensorrt docs/operators.md of the release).

        8.5/8.6: "supports operators up to Opset 17"; 10.0: "opset 9 to opset 20"; 10.15:
        "opset 9 to opset 24". Releases in between are given the 10.0 range (conservative).
        """
        if self.major == 8:
            return (7, 17)
        if self.major == 10 and self.minor < 15:
            return (9, 20)
        return (9, 24)

    @property
    def max_ir_version(self) -> int:
        """The ONNX IR version the bundled ONNX parser reads (onnx 1.12/1.13 in 8.x: IR 8)."""
        return 8 if self.major == 8 else 10

    @property
    def precision_flags(self) -> bool:
        """TensorRT 11 removed --fp16/--int8 and BuilderFlag.FP16/INT8: networks are strongly typed."""
        return self.major < 11

    @property
    def always_strongly_typed(self) -> bool:
        return self.major >= 11

    @property
    def explicit_batch_flag(self) -> bool:
        """8.x needs NetworkDefinitionCreationFlag.EXPLICIT_BATCH; 10.x ignores it (deprecated)."""
        return self.major < 10

    @property
    def has_strongly_typed(self) -> bool:
        return self.major >= 10

    @property
    def has_compatibility_modes(self) -> bool:
        """Version-compatible and hardware-compatible engines, builder optimisation level: 8.6+."""
        return self.at_least(8, 6)

    @property
    def native_instancenorm_default(self) -> bool:
        """onnx-tensorrt changelog 10.0 EA: kNATIVE_INSTANCENORM is ON by default."""
        return self.major >= 10


def parse_version(text: str | None) -> TrtVersion | None:
    """A version string as the ``tensorrt`` module reports it (``"10.3.0.30"``), or None."""
    if not text:
        return None
    try:
        return TrtVersion.parse(text)
    except BadInput:
        m = _VERSION_RE.match(str(text).split("+")[0].split("-")[0])
        return TrtVersion(*(int(g) if g else 0 for g in m.groups()[:3])) if m else None
