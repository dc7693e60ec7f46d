"""surge-bench harness: CLI, run config, runner, results database, reports."""
