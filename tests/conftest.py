"""Shared by the suites under tests/. Import paths (grading/, scripts/, docs/_ext, hub/) come from
pyproject.toml's [tool.pytest.ini_options] pythonpath: no test file sets sys.path."""
