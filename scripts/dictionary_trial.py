#!/usr/bin/env python3
"""Would trained zstd dictionaries pay for Git objects?

Splits a repository's objects in two halves by id (a random split),
trains a dictionary per kind on one half with the reference `zstd --train`,
and compresses every object of the other half one at a time, at level 3,
with and without it. Prints bytes per kind. Needs the `zstd` command.

    scripts/dictionary_trial.py REPO [DICT_BYTES]
"""

import os
import subprocess
import sys
import tempfile

from gitobjects import objects


def compressed_sizes(paths, dictionary=None):
    """Sizes of each file compressed alone at level 3 (frames with the
    content size, no checksum: as Stratum's client writes them)."""
    sizes = []
    for path in paths:
        args = ["zstd", "-3", "-q", "-c", "--no-check", path]
        if dictionary:
            args[1:1] = ["-D", dictionary]
        out = subprocess.run(args, check=True, stdout=subprocess.PIPE).stdout
        sizes.append(len(out))
    return sizes


def main(repo, dict_bytes):
    by_kind = {}
    for oid, kind, content in objects(repo):
        by_kind.setdefault(kind, []).append((oid, content))
    print(f"| kind | objects (test half) | logical | zstd -3 alone | with a {dict_bytes // 1024} KiB dictionary | saved |")
    print("|---|---:|---:|---:|---:|---:|")
    totals = [0, 0, 0]
    with tempfile.TemporaryDirectory() as scratch:
        for kind, items in sorted(by_kind.items()):
            train, test = [], []
            for oid, content in items:
                path = os.path.join(scratch, oid)
                with open(path, "wb") as f:
                    f.write(content)
                (train if int(oid[-1], 16) % 2 == 0 else test).append((path, content))
            if len(train) < 10 or not test:
                continue
            dictionary = os.path.join(scratch, f"{kind}.dict")
            trained = subprocess.run(
                ["zstd", "--train", "-q", f"--maxdict={dict_bytes}", "-o", dictionary]
                + [path for path, _ in train],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            paths = [path for path, _ in test]
            logical = sum(len(content) for _, content in test)
            # Content under 64 bytes or saving under a tenth goes raw.
            def stored(sizes):
                return sum(
                    size if len(content) >= 64 and size <= len(content) * 0.9 else len(content)
                    for size, (_, content) in zip(sizes, test)
                )
            alone = stored(compressed_sizes(paths))
            with_dict = stored(compressed_sizes(paths, dictionary)) if trained.returncode == 0 else alone
            totals = [totals[0] + logical, totals[1] + alone, totals[2] + with_dict]
            print(f"| {kind} | {len(test)} | {logical} | {alone} ({alone / logical:.2f}) "
                  f"| {with_dict} ({with_dict / logical:.2f}) | {1 - with_dict / alone:.0%} |")
    logical, alone, with_dict = totals
    print(f"| all | | {logical} | {alone} ({alone / logical:.2f}) | {with_dict} ({with_dict / logical:.2f}) "
          f"| {1 - with_dict / alone:.0%} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 112640)
