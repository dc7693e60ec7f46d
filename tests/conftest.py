import os
import sys
import uuid

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    """Test tensors and models are tiny: one intra-op thread avoids OpenMP overhead, which on
    2 cores made a small ResNet forward 100x slower (restored after the session)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def postgres_base_url():
    """The URL of a PostgreSQL server for database tests (``.ci/run`` starts one with
    scripts/start_test_postgres.sh); skipped without one, failed with BENCH_REQUIRE_POSTGRES=1."""
    url = os.environ.get("BENCH_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("BENCH_REQUIRE_POSTGRES") == "1":
            pytest.fail("BENCH_REQUIRE_POSTGRES=1 but BENCH_TEST_POSTGRES_URL is not set")
        pytest.skip("no PostgreSQL server: set BENCH_TEST_POSTGRES_URL (scripts/start_test_postgres.sh)")
    pytest.importorskip("psycopg")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request, tmp_path):
    """A fresh, empty results database on each backend: a SQLite file, or a new PostgreSQL
    database dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/results.sqlite"
        return
    from sqlalchemy import create_engine, text

    base = request.getfixturevalue("postgres_base_url")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    yield base.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()
