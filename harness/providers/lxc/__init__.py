"""LXC system containers running real systemd: the fast provider for hosts without usable KVM."""
