"""App config: connects the login-success receiver."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Sign-in policy: login throttling and API tokens."""

    name = "accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from .login_throttle import forget_failures_on_login

        user_logged_in.connect(forget_failures_on_login, dispatch_uid="accounts.forget_failures_on_login")
