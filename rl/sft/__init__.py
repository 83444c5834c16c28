"""SFT stage: fine-tune a causal LM on documents or chat transcripts (TRL SFTTrainer) into a folder RL can start from.

config (the `sft` Hydra node), data (rows and the held-out split), examples (token ids + loss masks, rendered like the
rollouts), heldout (the held-out loss), cache (fingerprint, atomic publish), training (the run). Entry point:
`python launch/sft.py +sft=<preset>`.
"""
