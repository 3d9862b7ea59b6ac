"""`aftersale policy list|show`: the policy presets shipped with the package."""

from __future__ import annotations

import argparse

from streams.rules import presets

#: What `--policy` takes, in every command that takes one.
POLICY_HELP = (
    "a preset's name (`aftersale policy list`: " + ", ".join(presets.NAMES) + ") or a policy "
    "YAML file (default: the contract's policy, which is the kuaishou preset)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser(
        "list",
        help="the presets, a line each",
        description="List the policy presets shipped with the package.",
    )
    show = actions.add_parser(
        "show",
        help="print a preset's YAML, with the source of every number",
        description="Print a preset's policy file as shipped (a starting point for your own: "
        "`aftersale policy show taobao > policy.yaml`).",
    )
    show.add_argument("name", metavar="NAME", help="the preset: " + ", ".join(presets.NAMES))


def run(args: argparse.Namespace) -> int:
    """The `aftersale policy` command."""
    if args.action == "list":
        width = max(map(len, presets.NAMES))
        for name in presets.NAMES:
            print(f"{name:<{width}}  {presets.title(name)}")
        return 0
    print(presets.text(args.name), end="")
    return 0
