"""A typed configuration for onnxruntime's ``quantize_static`` (instead of its ~25 string options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UsageError, optional_import

TARGETS = ("cpu", "tensorrt")
METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantConfig:
    """``target="cpu"``: unsigned activations (U8S8, the fast format on x86 VNNI);
    ``target="tensorrt"``: symmetric signed INT8 activations and weights (S8S8), what TensorRT's
    explicit quantization wants. Weights are per-channel in both."""

    target: str = "cpu"
    method: str = "minmax"
    per_channel: bool = True
    percentile: float = 99.999

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise UsageError(f"unknown INT8 target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.method not in METHODS:
            raise UsageError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not isinstance(self.per_channel, bool):
            raise UsageError(f"per_channel must be True or False, not {self.per_channel!r}")
        if (
            isinstance(self.percentile, bool)
            or not isinstance(self.percentile, (int, float))
            or not (50.0 < self.percentile <= 100.0)
        ):
            raise UsageError(f"percentile must be a number in (50, 100], not {self.percentile!r}")

    def manifest_fields(self) -> dict[str, Any]:
        """What an INT8 artifact records about how it was made."""
        fields: dict[str, Any] = {"target": self.target, "method": self.method, "per_channel": self.per_channel}
        if self.method == "percentile":
            fields["percentile"] = self.percentile
        return fields

    def quantize_static_kwargs(self) -> dict[str, Any]:
        quantization = optional_import("onnxruntime.quantization", "INT8 calibration")
        CalibrationMethod, QuantFormat, QuantType = (  # noqa: N806 - onnxruntime's enum names
            quantization.CalibrationMethod,
            quantization.QuantFormat,
            quantization.QuantType,
        )

        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[self.method]
        extra: dict[str, Any] = {}
        if self.method == "percentile":
            extra["CalibPercentile"] = self.percentile
        if self.target == "tensorrt":
            # TensorRT's explicit quantization: symmetric INT8, and biases left in float (onnx-tensorrt refuses the
            # INT32 bias DequantizeLinear that onnxruntime's default QuantizeBias=True makes)
            extra.update({"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
        return {
            "quant_format": QuantFormat.QDQ,
            "per_channel": self.per_channel,
            "reduce_range": False,
            "activation_type": QuantType.QUInt8 if self.target == "cpu" else QuantType.QInt8,
            "weight_type": QuantType.QInt8,
            "calibrate_method": method,
            "extra_options": extra,
        }
