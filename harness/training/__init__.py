"""Training: exercises that break a lab on purpose (shipped in exercises/), classes of student labs,
handouts, and whether a class fits.
"""
