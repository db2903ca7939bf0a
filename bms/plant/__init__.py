"""The pack plant: cells, sensors, contactors (the ground truth)."""

from bms.plant.pack import TRACE_COLUMNS, Pack, Trace
from bms.plant.sensors import Measurement, Sensors

__all__ = ["TRACE_COLUMNS", "Measurement", "Pack", "Sensors", "Trace"]
