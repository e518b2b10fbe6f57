"""``skeleton-attention`` command line: checks a user can run on their own downloads.

    skeleton-attention check-views /data/nturgb+d_skeletons     # multi-view alignment residuals
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skeleton-attention", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check-views", help="align the camera views of every complete NTU recording and print residuals",
        add_help=False,
    )
    check.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "check-views":
        from skeleton_attention.skeletons.views import main as check_views

        return check_views(args.rest)
    return 2


if __name__ == "__main__":
    sys.exit(main())
