"""Reliability suites: fault injection, load and abuse (issue 8); docs/reliability.md is generated from them."""
