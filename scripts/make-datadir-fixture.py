#!/usr/bin/env python3
"""Writes a data dir fixture with a given release's binaries.

Starts that release's `stratum-node` (one shard) on an empty data dir, puts
objects through that release's `stratum` command, deletes some (and one id
it never held), stops the node cleanly (so its index checkpoint is
written), and copies the data dir to OUT with a manifest the upgrade test
reads. Object contents are `stratum_testkit::object(seed, len)`, computed
here the same way.

    scripts/make-datadir-fixture.py OLD_NODE_BIN OLD_STRATUM_BIN OUT [--dictionary]

With --dictionary (releases that have `stratum dictionary`), a small
dictionary trained on the text objects is installed first, so the fixture
holds records compressed with it and the shard's dictionary files.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

KINDS = ["blob", "tree", "commit", "tag"]  # ObjectKind::ALL order
MASK = (1 << 64) - 1


def content(seed, length):
    """stratum_testkit::object's bytes."""
    state = ((seed * 0x9E3779B97F4A7C15) & MASK) | 1
    out = bytearray(length)
    for i in range(length):
        state ^= (state << 13) & MASK
        state ^= state >> 7
        state ^= (state << 17) & MASK
        out[i] = state & 0xFF
    return bytes(out)


def text(seed, length):
    """Compressible content: one line repeated (the upgrade test makes the
    same)."""
    line = f"object {seed}: a line of text that compresses well\n".encode()
    return (line * (length // len(line) + 1))[:length]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train(cli_bin, scratch, objects):
    """A 4 KiB dictionary trained on `objects` (via a throwaway repository)."""
    repo = os.path.join(scratch, "train")
    os.makedirs(repo)
    git = ["git", "-C", repo, "-c", "user.name=f", "-c", "user.email=f@example.invalid"]
    subprocess.run(git + ["init", "-q"], check=True)
    for index, body in enumerate(objects):
        with open(os.path.join(repo, f"f{index}"), "wb") as f:
            f.write(body)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "samples"], check=True)
    path = os.path.join(scratch, "fixture.dict")
    subprocess.run([cli_bin, "dictionary", "train", repo, "-o", path, "--max-bytes", "4096"],
                   check=True, capture_output=True)
    return path


def main(node_bin, cli_bin, out, dictionary=False):
    scratch = tempfile.mkdtemp()
    data = os.path.join(scratch, "data")
    listen = f"127.0.0.1:{free_port()}"
    node = subprocess.Popen(
        [node_bin, "--data-dir", data, "--shards", "1", "--listen", listen, "--admin", "off"],
        stderr=open(os.path.join(scratch, "node.log"), "w"),
    )
    cli = [cli_bin, "--node", listen]
    manifest = []
    try:
        for _ in range(100):
            if subprocess.run(cli + ["stat"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        if dictionary:
            samples = [text(seed, 100 + (seed * 997) % 3000) for seed in range(100, 160)]
            path = train(cli_bin, scratch, samples)
            subprocess.run(cli + ["dictionary", "install", path], check=True, capture_output=True)
        for seed in range(1, 41):
            length = 100 + (seed * 997) % 3000
            kind = KINDS[seed % 4]
            # Every other object compressible: stored compressed by a
            # release whose client compresses.
            form = "text" if seed % 2 == 0 else "random"
            path = os.path.join(scratch, f"object-{seed}")
            with open(path, "wb") as f:
                f.write(text(seed, length) if form == "text" else content(seed, length))
            oid = subprocess.run(cli + ["put", "--kind", kind, path], check=True,
                                 capture_output=True, text=True).stdout.strip()
            manifest.append([oid, seed, length, form, "live"])
        for entry in manifest[::5]:
            subprocess.run(cli + ["delete", entry[0]], check=True, capture_output=True)
            entry[4] = "deleted"
        # An id this node never held: a tombstone anyway (where the release
        # writes one).
        never = "00" * 31 + "07"
        subprocess.run(cli + ["delete", never], capture_output=True)
    finally:
        node.terminate()
        node.wait(timeout=30)
    if os.path.exists(out):
        shutil.rmtree(out)
    shutil.copytree(data, out)
    with open(os.path.join(out, "MANIFEST"), "w") as f:
        f.write("# id seed length form state; form random: stratum_testkit::object(seed, length),\n"
                "# text: the line 'object {seed}: a line of text that compresses well' repeated\n")
        for oid, seed, length, form, state in manifest:
            f.write(f"{oid} {seed} {length} {form} {state}\n")
    for root, _, files in os.walk(out):
        for name in files:
            if name.endswith(".dat"):  # mostly prepared zeros: 1 MiB -> ~80 KiB
                subprocess.run(["zstd", "-q", "-19", "--rm", os.path.join(root, name)], check=True)
    shutil.rmtree(scratch)


if __name__ == "__main__":
    args = [arg for arg in sys.argv[1:] if arg != "--dictionary"]
    if len(args) != 3:
        sys.exit(__doc__)
    main(*args, dictionary="--dictionary" in sys.argv[1:])
