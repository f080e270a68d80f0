"""The `memsaver` command pip installs: runs the CLI carried in the package
(memsaver/_native/bin/memsaver), which finds libmemsaver.so beside it."""

import os
import sys

from . import cli_path


def main():
    cli = cli_path()
    if cli is None:
        print("memsaver: the CLI is not in this installation (memsaver/_native/bin/memsaver)",
              file=sys.stderr)
        return 2
    os.execv(cli, [cli] + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
