"""Sign-in: throttling failed logins (django-axes wired to our pages and API error shape) and the API token."""
