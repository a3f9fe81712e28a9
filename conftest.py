"""Session fixtures shared by every test module: a small synthetic lead database and a model
trained on it. (Module-specific fixtures live in tests/conftest.py and the test files.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SMALL_LEADS = 3000
SMALL_SEED = 11
SMALL_END = "2026-06-30"  # pinned: the tests score as of this day (AS_OF)


@pytest.fixture(scope="session")
def small_db_url(tmp_path_factory) -> str:
    """A SQLite lead database with 3,000 synthetic leads and their events (seed 11, to 2026-06-30)."""
    from leadml.data.synth import generate_database

    path = tmp_path_factory.mktemp("leaddb") / "leads.db"
    url = f"sqlite:///{path}"
    generate_database(url, SMALL_LEADS, SMALL_SEED, end=SMALL_END)
    return url


@pytest.fixture(scope="session")
def small_config(small_db_url):
    """The default config pointed at the small database, with a quick model."""
    from leadml.config import Config

    return Config.model_validate(
        {
            "data": {"source": small_db_url},
            "model": {"lightgbm": {"num_boost_round": 120}, "threads": 1},
        }
    )


@pytest.fixture(scope="session")
def trained(small_config, tmp_path_factory):
    """A TrainResult (bundle written, no MLflow) on the small database."""
    from leadml.workflow import run_training

    out = tmp_path_factory.mktemp("models")
    return run_training(small_config, output=out, log=lambda _: None, track=False)


@pytest.fixture(scope="session")
def trained_bundle(trained) -> Path:
    """Path to the bundle folder of the small trained model."""
    return trained.bundle_dir


@pytest.fixture(scope="session")
def lead_model(trained_bundle):
    """The loaded LeadModel of the small trained bundle."""
    from leadml.predict import load_model

    return load_model(trained_bundle)


@pytest.fixture
def pg_url_required() -> str:
    """LEADML_TEST_PG_URL, or skip (CI sets it and LEADML_REQUIRE_PG=1, so there it must exist)."""
    url = os.environ.get("LEADML_TEST_PG_URL")
    if not url:
        if os.environ.get("LEADML_REQUIRE_PG"):
            pytest.fail("LEADML_REQUIRE_PG is set but LEADML_TEST_PG_URL is not")
        pytest.skip(
            "PostgreSQL tests need LEADML_TEST_PG_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )
    return url
