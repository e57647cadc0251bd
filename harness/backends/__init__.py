"""The storage backends that come with storlab, one package each (registered in pyproject.toml
under the `storlab.backends` entry points, like any backend from outside this repository)."""
