"""The GLUE family (registers ``glue``); needs the ``nlp`` extra (transformers)."""
from bench.plugins import TASKS
from tasks.glue.task import GlueTask

TASKS.register("glue")(GlueTask())
