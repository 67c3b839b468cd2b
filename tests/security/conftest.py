"""Security tests: fast password hashing, so that many failed logins cost milliseconds, not seconds."""

import pytest


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """Users created in these tests hash with MD5 (tests only); the throttle, not the hash, is the subject."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
