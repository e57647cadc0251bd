"""For test authors: the pytest plugin (lab fixtures, evidence on failure) and the I/O workloads fault tests run."""
