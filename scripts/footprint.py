#!/usr/bin/env python3
"""Disk footprint of Git repositories in Stratum, beside Git's own forms.

For each repository: its objects' logical bytes (content, as Git hashes
it), zlib per object (Git's loose form, level 6), `git repack -ad`'s pack,
and what a fresh one-shard Stratum node holds after `stratum import-git`
(record bytes on disk, headers and padding included; and the payload
bytes alone). Needs the release binaries:

    cargo build --release -p stratum-node -p stratum-client
    scripts/footprint.py REPO [REPO ...] [--dictionary-from TRAIN_REPO]

With --dictionary-from, a dictionary trained on TRAIN_REPO's objects
(`stratum dictionary train`) is installed on the node before each import,
and a column shows what it holds then.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

from gitobjects import objects

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE = os.path.join(ROOT, "target/release/stratum-node")
CLI = os.path.join(ROOT, "target/release/stratum")


def git_forms(repo):
    logical = zlib_bytes = count = 0
    for _, kind, content in objects(repo):
        count += 1
        logical += len(content)
        loose = b"%s %d\0" % (kind.encode(), len(content)) + content
        zlib_bytes += len(zlib.compress(loose, 6))
    with tempfile.TemporaryDirectory() as scratch:
        mirror = os.path.join(scratch, "mirror.git")
        subprocess.run(["git", "clone", "-q", "--mirror", repo, mirror], check=True)
        subprocess.run(["git", "-C", mirror, "repack", "-adq"], check=True)
        pack_dir = os.path.join(mirror, "objects", "pack")
        pack = sum(
            os.path.getsize(os.path.join(pack_dir, name))
            for name in os.listdir(pack_dir)
            if name.endswith(".pack")
        )
    return count, logical, zlib_bytes, pack


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric(admin, name):
    body = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith(name + "{")
    )


def stratum_stored(repo, compression, dictionary=None):
    with tempfile.TemporaryDirectory() as scratch:
        port, admin_port = free_port(), free_port()
        listen, admin = f"127.0.0.1:{port}", f"127.0.0.1:{admin_port}"
        node = subprocess.Popen(
            [NODE, "--data-dir", os.path.join(scratch, "data"), "--shards", "1",
             "--listen", listen, "--admin", admin],
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    metric(admin, "stratum_store_objects")
                    break
                except OSError:
                    time.sleep(0.1)
            args = [CLI, "--node", listen]
            if dictionary:
                subprocess.run(args + ["dictionary", "install", dictionary], check=True,
                               stdout=subprocess.DEVNULL)
            if not compression:
                args += ["--compression", "off"]
            subprocess.run(args + ["import-git", repo], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return {
                "records": metric(admin, "stratum_store_live_bytes"),
                "payload": metric(admin, "stratum_store_put_stored_bytes_total"),
                "logical": metric(admin, "stratum_store_put_logical_bytes_total"),
                "objects": metric(admin, "stratum_store_objects"),
            }
        finally:
            node.terminate()
            node.wait()


def main(repos, train_repo):
    dictionary = None
    scratch = tempfile.mkdtemp()
    if train_repo:
        dictionary = os.path.join(scratch, "trained.dict")
        subprocess.run([CLI, "dictionary", "train", train_repo, "-o", dictionary], check=True,
                       stdout=subprocess.DEVNULL)
    rows = []
    for repo in repos:
        count, logical, zlib_bytes, pack = git_forms(repo)
        compressed = stratum_stored(repo, True)
        raw = stratum_stored(repo, False)
        with_dict = stratum_stored(repo, True, dictionary) if dictionary else None
        rows.append({
            "repo": repo, "objects": count, "logical": logical,
            "zlib_per_object": zlib_bytes, "git_pack": pack,
            "stratum_records": compressed["records"],
            "stratum_payload": compressed["payload"],
            "stratum_records_uncompressed": raw["records"],
            "stratum_records_dictionary": with_dict and with_dict["records"],
        })
    shutil.rmtree(scratch)
    print(json.dumps(rows, indent=1), file=sys.stderr)
    extra = " with the dictionary | / logical |" if train_repo else ""
    print("| repository | objects | logical | zlib per object | git repack -ad | Stratum (records) | Stratum / logical | uncompressed Stratum |" + extra)
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if train_repo else ""))
    mb = lambda n: f"{n / 1e6:.2f} MB"
    for row in rows:
        print(f"| {os.path.basename(row['repo'].rstrip('/'))} | {row['objects']} | {mb(row['logical'])} "
              f"| {mb(row['zlib_per_object'])} | {mb(row['git_pack'])} | {mb(row['stratum_records'])} "
              f"| {row['stratum_records'] / row['logical']:.2f} | {mb(row['stratum_records_uncompressed'])} |"
              + (f" {mb(row['stratum_records_dictionary'])} | {row['stratum_records_dictionary'] / row['logical']:.2f} |"
                 if train_repo else ""))


if __name__ == "__main__":
    args = sys.argv[1:]
    train_repo = None
    if "--dictionary-from" in args:
        at = args.index("--dictionary-from")
        train_repo = args[at + 1]
        del args[at:at + 2]
    if not args:
        sys.exit(__doc__)
    for binary in (NODE, CLI):
        if not os.path.exists(binary):
            sys.exit(f"{binary} is missing: cargo build --release -p stratum-node -p stratum-client")
    main(args, train_repo)
