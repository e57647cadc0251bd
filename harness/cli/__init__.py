"""The storlab command line: `main` parses and dispatches; one module per command group (lab, training, matrix)."""
