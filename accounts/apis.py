"""API token endpoint: DRF's ObtainAuthToken, with failed attempts counted by the login throttle."""

from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response

from .login_throttle import login_failures_forget
from .serializers import TokenObtainInputSerializer


class TokenObtainApi(ObtainAuthToken):
    """POST username and password, get the user's API token; 429 with the retry time while locked out."""

    serializer_class = TokenObtainInputSerializer

    def get_serializer_context(self) -> dict:
        """Authenticate with Django's request: django-axes marks a lockout on it, and its middleware answers it.

        DRF's Request wrapper would keep the mark to itself and the lockout would read as a wrong password.
        """
        return {**super().get_serializer_context(), "request": self.request._request}

    def post(self, request, *args, **kwargs):
        """Exchange a username and password for the API token; repeated failures lock out (429 says when to retry)."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        login_failures_forget(request=request._request, username=user.get_username())
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})
