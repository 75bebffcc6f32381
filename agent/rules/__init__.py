"""Rules: the YAML language, the ATT&CK catalog, compilation and evaluation."""
