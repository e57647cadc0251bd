"""Node providers: the interface (base), one package per engine with its client, image or box and
files, and what they share (host disks, safe writes into a node's filesystem, the golden image).
"""
