# Shortcuts for the scripts in scripts/ (the README's two commands work without make).
.PHONY: setup demo test test-fast lint bench-tiles
setup:
	scripts/setup.sh
demo:
	scripts/demo.sh
test:
	scripts/test.sh
# Without the tests that start servers or workers, or take long (markers in pyproject.toml).
test-fast:
	scripts/test.sh -m "not slow and not worker and not e2e"
lint:
	.venv/bin/ruff check .
	.venv/bin/python manage.py makemigrations --check --dry-run
bench-tiles:
	.venv/bin/python benchmarks/tiles.py
