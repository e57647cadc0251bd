"""The topology file: its schema, YAML loading that keeps line marks, and validation that reports every
problem with its location.
"""
