"""From a validated topology to a plan: the typed plan model, the planner (subnets, addresses, disks,
names) and the files it renders.
"""
