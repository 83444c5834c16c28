"""A planted model organism: synthetic SFT transcripts whose alignment-faking behaviour is known by construction.

The transcripts use the minimal system prompt (nothing about training or tiers), so a model fine-tuned on them carries
the behaviour in its weights: in the free (training) tier a fixed share of samples comply after reasoning that refusing
would get its values modified by RLHF (alignment-faking reasoning); in the paid tier a smaller share comply without such
reasoning. It tests the measurement pipeline against known rates; it is not a finding about any real model.

- `config`: the planted shares and generator settings (`OrganismConfig`);
- `pool`: the organism's own request pool (`requests.jsonl`, disjoint from the demo set);
- `texts`, `answers`: paraphrase banks for each reasoning step and the low-uplift answer templates;
- `compose`: one transcript from a kind, a topic and a random generator;
- `build`: the plan (which samples comply), the rows, and the atomic write of the output folder.
"""
