"""The IAM subset (v3): password tokens and project look-up."""
