"""``pite-model describe CONFIG_OR_DIR [--stage K]``: parameters per component, built on the meta device."""

from __future__ import annotations

import argparse
import sys

from pite_ros.model.config import ConfigError, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pite-model", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    describe = commands.add_parser("describe", help="parameters per component and the total")
    describe.add_argument("config", help="preset name (tiny, pite-7b), config JSON or checkpoint directory")
    describe.add_argument("--stage", type=int, choices=(1, 2, 3), help="also set up this stage's LoRA and show what trains")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pite_ros.model.describe import describe

    try:
        print(describe(load_config(args.config), args.stage))
    except ConfigError as error:
        print(f"pite-model: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
