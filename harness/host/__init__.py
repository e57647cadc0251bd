"""The machine storlab runs on: what it can give a lab (facts), its firewall for lab bridges, its
libvirt connection, and its storage pools wired to a lab's backends.
"""
