"""Task families. Each sub-package is a plugin that registers itself in bench.tasks."""
