"""A lab: its lifecycle (up, down, resume, snapshots, reap), its lease, its secrets, who may be root in
it, and the evidence kept when it fails.
"""
