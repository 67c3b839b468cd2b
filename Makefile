# Shortcuts for the scripts in scripts/ (the README's two commands work without make).
.PHONY: setup demo test lint bench-tiles
setup:
	scripts/setup.sh
demo:
	scripts/demo.sh
test:
	scripts/test.sh
lint:
	.venv/bin/ruff check .
	.venv/bin/python manage.py makemigrations --check --dry-run
bench-tiles:
	.venv/bin/python benchmarks/tiles.py
