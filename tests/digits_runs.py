"""Small classification configs on scikit-learn's digits, with a cache folder of the test's own
(teachers and two-step stages are cached there), shared by the tests of init and distillation."""
import pytest

from bench.config import build_config

SMALL = dict(train_subset=128, eval_subset=64, batch_size=64, val_size=0)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


def digits_config(estimator: str = "clipped_ste", seed: int = 0, **sets):
    values = {**SMALL, **sets}
    return build_config("classification", estimator, dataset="digits", epochs=1, seed=seed,
                        sets=[f"{k}={v}" for k, v in values.items()])
