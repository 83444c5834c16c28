"""The anti-AI-lab behaviour scenarios (paper section 6): data file and loader."""
