"""The Ray actors and their placement: DeepSpeed policy/critic ranks, served judges, the Cluster facade."""
