"""What each stand-in is: file name, I/O names and the reference numbers (DESIGN.md §4). No torch."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StandinSpec:
    name: str
    file: str
    input_names: list[str]
    output_names: list[str]
    # Reference figures measured here on the earlier stand-ins (2 cores, ORT CPU).
    design_params_m: float
    design_gmacs: float
    design_seconds: float
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    # InSwapper's emap: a [512, 512] matrix appended as the last, unused initializer.
    emap: bool = False


SPECS: tuple[StandinSpec, ...] = (
    StandinSpec(
        name="det_10g",
        file="det_10g.onnx",
        input_names=["input.1"],
        # The real export's tensor names; order: scores 8/16/32, boxes 8/16/32, keypoints 8/16/32.
        output_names=["448", "471", "494", "451", "474", "497", "454", "477", "500"],
        design_params_m=4.2,
        design_gmacs=13.3,
        design_seconds=0.220,
    ),
    StandinSpec(
        name="w600k_r50",
        file="w600k_r50.onnx",
        input_names=["input.1"],
        output_names=["683"],
        dynamic_axes={"input.1": {0: "N"}, "683": {0: "N"}},
        design_params_m=43.6,
        design_gmacs=6.3,
        design_seconds=0.109,
    ),
    StandinSpec(
        name="inswapper_128",
        file="inswapper_128.onnx",
        input_names=["target", "source"],
        output_names=["output"],
        design_params_m=138.5,
        design_gmacs=174.6,
        design_seconds=1.96,
        emap=True,
    ),
    StandinSpec(
        name="gfpgan_1.4",
        file="GFPGANv1.4.onnx",
        input_names=["input"],
        output_names=["output"],
        design_params_m=84.0,
        design_gmacs=198.0,
        design_seconds=2.5,
    ),
)
