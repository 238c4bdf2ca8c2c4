"""Talking-head metrics: each a class (update/compute) with a functional twin in metrics.functional."""
