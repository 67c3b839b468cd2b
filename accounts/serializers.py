"""Input serializers of the sign-in endpoints."""

from django.contrib.auth import get_user_model
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer

# Longer than any stored username: refused here instead of failing to be recorded as a failed attempt.
USERNAME_MAX_LENGTH = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD).max_length
PASSWORD_MAX_LENGTH = 4096


class TokenObtainInputSerializer(AuthTokenSerializer):
    """Username and password, bounded to what an account can have; authenticates (and is throttled) on validate."""

    username = serializers.CharField(label="Username", write_only=True, max_length=USERNAME_MAX_LENGTH)
    password = serializers.CharField(
        label="Password",
        style={"input_type": "password"},
        trim_whitespace=False,
        write_only=True,
        max_length=PASSWORD_MAX_LENGTH,
    )
