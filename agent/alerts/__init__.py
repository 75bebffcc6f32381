"""Alerts: what a rule match becomes, and where it goes."""
