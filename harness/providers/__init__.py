"""Node providers: the interface (base) and what a provider declares (capabilities), one package
per engine with its client, image or box, files and orphan sweep, and what they share (host
disks, safe writes into a node's filesystem, the golden image).
"""
