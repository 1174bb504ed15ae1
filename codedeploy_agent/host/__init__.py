"""Host state: the deployment root laid out exactly as the real agent's (reference §2)."""
