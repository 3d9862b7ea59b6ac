"""The arguments of `aftersale project` and `aftersale api`, apart from their modules so that
building the command line imports neither aiohttp nor redis (every `aftersale` command builds
it)."""

from __future__ import annotations

import argparse

LOGLEVELS = ("debug", "info", "warning", "error")


def add_project_arguments(parser: argparse.ArgumentParser) -> None:
    """`aftersale project` (run: `streams.readside.projector.run`)."""
    parser.add_argument("--loglevel", default="info", choices=LOGLEVELS, help="log level")


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    """`aftersale api` (run: `streams.readside.api.run`)."""
    parser.add_argument(
        "--loglevel",
        default="info",
        choices=LOGLEVELS,
        help="log level (debug also logs every request)",
    )
