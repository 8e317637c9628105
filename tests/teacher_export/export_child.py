"""Runs an export of the tiny synthetic dataset; with --kill-after K it SIGKILLs itself when the
writer receives its (K+1)-th sample, i.e. in the middle of a shard.

python -m tests.teacher_export.export_child DATAROOT OUT [--kill-after K]
"""
import argparse
import os
import signal

from cache_schema import CacheWriter
from teacher_export.export import export
from tests.teacher_export.exports import small_export_options


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataroot")
    parser.add_argument("out")
    parser.add_argument("--kill-after", type=int, default=None)
    args = parser.parse_args()
    if args.kill_after is not None:
        original = CacheWriter.write_sample
        seen = {"n": 0}

        def write_then_maybe_die(self, index, sample):
            if seen["n"] == args.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            seen["n"] += 1
            original(self, index, sample)

        CacheWriter.write_sample = write_then_maybe_die
    export(small_export_options(args.dataroot, args.out, image_teacher=None, shard_size=2), progress=False)


if __name__ == "__main__":
    main()
