"""INT8: calibration feeds, a typed quantization config, per-depth QDQ calibration with an accuracy guard."""

from .calibrate import calibrate
from .config import QuantConfig

__all__ = ["QuantConfig", "calibrate"]
