"""A lab node as roles and tests see it (commands over ssh, whatever provider made it), and the roles every node gets."""
