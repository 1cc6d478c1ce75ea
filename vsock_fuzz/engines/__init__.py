"""Engines: what attacks a target with cases and collects the findings.

Kept empty on purpose: a harness imports vsock_fuzz.engines.percase before it
starts atheris's instrumentation, and must import nothing else with it."""
