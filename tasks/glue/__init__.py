"""GLUE task family (registers the task ``glue``); needs the ``nlp`` extra (transformers)."""
from bench.plugins import TASKS
from tasks.glue.task import GlueTask

TASKS.register("glue")(GlueTask())
