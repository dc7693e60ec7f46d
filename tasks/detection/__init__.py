"""The detection family (registers ``detection``); needs the ``detection`` extra (OpenMMLab).

mmdet is imported only when a detection run is checked or started, so the core install
lists and runs the other families without it.
"""
from bench.plugins import TASKS
from tasks.detection.task import DetectionTask

TASKS.register("detection")(DetectionTask())
