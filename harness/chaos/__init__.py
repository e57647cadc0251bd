"""Chaos runs without a lab: fault schedules drawn from a seed, their shrinking, a write ledger and its checker."""
