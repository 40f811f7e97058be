"""Reading every object of a Git repository, for the measurement scripts."""

import subprocess


def objects(repo):
    """(id, type, content) of every object, from one `git cat-file` stream."""
    proc = subprocess.Popen(
        ["git", "-C", repo, "cat-file", "--batch-all-objects", "--batch"],
        stdout=subprocess.PIPE,
    )
    out = proc.stdout
    while True:
        header = out.readline()
        if not header:
            break
        oid, kind, size = header.split()
        content = out.read(int(size))
        out.read(1)  # the newline after each object
        yield oid.decode(), kind.decode(), content
    proc.wait()
