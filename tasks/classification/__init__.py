"""The image classification family (registers ``classification``)."""
from bench.plugins import TASKS
from tasks.classification.task import ClassificationTask

TASKS.register("classification")(ClassificationTask())
