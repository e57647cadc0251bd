"""The core's roles: base (every node) and hypervisor (libvirtd in the lab). A backend's roles
live in its package (harness/backends/...). Roles configure nodes through harness.nodes.node.Node
only, so they work on any provider; each has NAME and apply(lab), and apply is idempotent."""
