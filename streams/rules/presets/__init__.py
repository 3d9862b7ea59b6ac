"""Policy presets shipped with the package: the published after-sale rules of a marketplace,
each a policy file (`<name>.yaml` here) with the source of every number in a comment.

`aftersale policy list` and `aftersale policy show NAME` print them; `--policy NAME` and
`AFTERSALE_POLICY=NAME` use one.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

import yaml

from streams.errors import PolicyError
from streams.rules.policy import Policy, policy_from_mapping

#: The presets, in the order `aftersale policy list` shows them.
NAMES: Final = ("kuaishou", "taobao", "wechat")


def text(name: str) -> str:
    """The preset's file as shipped, comments and all."""
    if name not in NAMES:
        raise PolicyError(f"no policy preset {name!r} (presets: {', '.join(NAMES)})")
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def title(name: str) -> str:
    """The preset's one-line description: its file's first line, after `# <name>: `."""
    first = text(name).splitlines()[0]
    return first.removeprefix(f"# {name}:").strip()


def load(name: str) -> Policy:
    """The preset as a Policy."""
    return policy_from_mapping(yaml.safe_load(text(name)), f"preset {name}")
