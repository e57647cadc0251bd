"""Labs on demand: `storlab serve`, a web service over the library (warm pools, student and instructor pages)."""
