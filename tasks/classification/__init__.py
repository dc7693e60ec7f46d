"""Image classification task family (registers the task ``classification``)."""
from bench.plugins import TASKS
from tasks.classification.task import ClassificationTask

TASKS.register("classification")(ClassificationTask())
