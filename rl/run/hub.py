"""Push an HF model folder to the Hugging Face Hub (`ckpt.push_to_hub=<owner>/<name>`).

The token comes from the environment only: the variable named by `ckpt.hub_token_env` (HF_TOKEN by default). It is
read when the push starts and handed to huggingface_hub, never stored in the config, a log line or an error message;
a run that asks for a push without the variable set stops at start-up (`check_hub_token`, from rl/config.py), naming
the variable. `HF_ENDPOINT` points huggingface_hub at another hub (a mirror, or the test suite's local server).

The repo is created private when it does not exist (an RL-trained policy is not something to publish by accident);
an existing repo gets a new commit with the folder's files.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from rollouts.config_check import ConfigError

log = logging.getLogger("afrl")


class HubPushError(RuntimeError):
    """A push that failed; the message names the repo and the folder (complete on disk) and how to retry."""


def check_hub_token(repo_id: str | None, token_env: str) -> None:
    """Start-up check: a push needs the token variable set (its value is not read here, nor ever shown)."""
    if repo_id is not None and not os.environ.get(token_env):
        raise ConfigError(f"ckpt.push_to_hub={repo_id!r} needs a hub token in the environment variable {token_env} "
                          f"(ckpt.hub_token_env), which is unset or empty; export {token_env}=<token> (a write token) "
                          "or choose another variable with ckpt.hub_token_env=<NAME>")


def push_folder(folder: Path, repo_id: str, token_env: str, commit_message: str) -> str:
    """Create `repo_id` (private) unless it exists and upload every file of `folder` in one commit. Returns the
    commit's URL."""
    from huggingface_hub import HfApi

    check_hub_token(repo_id, token_env)
    api = HfApi(token=os.environ[token_env])
    try:
        api.create_repo(repo_id, private=True, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
    except Exception as error:  # huggingface_hub's messages carry the URL and status, never the token
        raise HubPushError(f"ckpt.push_to_hub={repo_id!r}: pushing {folder} failed ({type(error).__name__}: {error}); "
                           f"the folder is complete on disk: retry with `hf upload {repo_id} {folder}`") from error
    log.info("pushed %s to the hub: %s", folder, commit.commit_url)
    return commit.commit_url
