"""A writer process for the resume and concurrency tests.

python -m tests.cache_schema.writer_child URL FIRST LAST [--kill-after-writes K]

Writes samples FIRST..LAST-1 of the tiny test store. With --kill-after-writes it SIGKILLs itself
right before its (K+1)-th zarr array write, i.e. in the middle of writing a shard.
"""
import argparse
import os
import signal

import zarr

from cache_schema import CacheWriter
from cache_schema.views import CacheSample
from tests.cache_schema.samples import make_sample, tiny_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("first", type=int)
    parser.add_argument("last", type=int)
    parser.add_argument("--num-samples", type=int, default=10)
    parser.add_argument("--kill-after-writes", type=int, default=None)
    args = parser.parse_args()
    if args.kill_after_writes is not None:
        original = zarr.Array.__setitem__
        count = {"n": 0}

        def counting_setitem(self, selection, value):
            if count["n"] == args.kill_after_writes:
                os.kill(os.getpid(), signal.SIGKILL)
            count["n"] += 1
            original(self, selection, value)

        zarr.Array.__setitem__ = counting_setitem
    config = tiny_config(num_samples=args.num_samples)
    with CacheWriter(args.url, config, {"lidar": "test"}) as writer:
        for i in range(args.first, args.last):
            writer.write_sample(i, CacheSample.from_arrays(make_sample(config, i)))
    print("finished", flush=True)


if __name__ == "__main__":
    main()
