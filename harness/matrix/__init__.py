"""Config matrices: one base topology, axes of values, the cells run as labs, and their report."""
