"""Tests of prompts, chat, datasets, parsing, the organism and the vLLM engine."""
