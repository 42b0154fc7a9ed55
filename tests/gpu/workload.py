#!/usr/bin/env python3
"""GPU workload of the Kybernate GPU proof (tests/gpu/proof.ts drives it).

  workload.py make-weights PATH GIB   write a GIB-sized deterministic "weights" file
  workload.py serve PATH STATE_DIR    load PATH onto the GPU, then count on the GPU forever

While serving, STATE_DIR/status.json holds {pid, ready, counter, checksum, load_s}; the counter is a
GPU tensor incremented in a loop, so it stops while CUDA is locked and continues after a restore.
Writing STATE_DIR/checksum.request (a nonce) asks for a fresh checksum of the GPU data, answered in
STATE_DIR/checksum.reply. Files, not pipes: they survive a CRIU dump/restore of this process.
"""
import json
import os
import sys
import time

CHUNK_BYTES = 256 << 20


def write_json(path, value):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def make_weights(path, gib):
    import numpy as np

    base = np.random.default_rng(0).integers(0, 2**32, CHUNK_BYTES // 4, dtype=np.uint32)
    with open(path, "wb") as f:
        for i in range(gib * (1 << 30) // CHUNK_BYTES):
            (base ^ np.uint32((i * 2654435761) & 0xFFFFFFFF)).tofile(f)


def checksum(data):
    # Position-sensitive: chunk sums weighted by chunk index, on the GPU.
    import torch

    n = CHUNK_BYTES // 4
    total = 0
    for i, start in enumerate(range(0, data.numel(), n)):
        total += int(data[start:start + n].sum(dtype=torch.int64).item()) * (i + 1)
    return total


def serve(weights, state_dir):
    started = time.time()
    import torch

    size = os.path.getsize(weights)
    data = torch.empty(size // 4, dtype=torch.int32, device="cuda")
    staging = torch.empty(CHUNK_BYTES // 4, dtype=torch.int32).pin_memory()
    staging_bytes = memoryview(staging.numpy()).cast("B")
    with open(weights, "rb", buffering=0) as f:
        offset = 0
        while offset < data.numel():
            got = f.readinto(staging_bytes)
            if not got:
                raise SystemExit(f"{weights} ended early")
            data[offset:offset + got // 4].copy_(staging[: got // 4])
            offset += got // 4
    initial = checksum(data)
    counter = torch.zeros(1, dtype=torch.int64, device="cuda")
    status_path = os.path.join(state_dir, "status.json")
    request_path = os.path.join(state_dir, "checksum.request")
    load_s = time.time() - started
    while True:
        counter += 1
        write_json(status_path, {"pid": os.getpid(), "ready": True, "counter": int(counter.item()),
                                 "checksum": initial, "load_s": load_s})
        if os.path.exists(request_path):
            with open(request_path) as f:
                nonce = f.read().strip()
            os.unlink(request_path)
            write_json(os.path.join(state_dir, "checksum.reply"), {"nonce": nonce, "checksum": checksum(data)})
        time.sleep(0.01)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make-weights":
        make_weights(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
