#!/usr/bin/env python3
"""GPU workload of the Kybernate GPU proof (tests/gpu/proof.ts drives it).

  workload.py make-weights PATH GIB   write a GIB-sized deterministic "weights" file
  workload.py serve PATH STATE_DIR    load PATH onto the GPU, then count on the GPU forever
  KYBERNATE_WORKLOAD_DEVICE=cpu       the same without PyTorch or a GPU (data and counter in host memory),
                                      for dry runs of the container proof on a machine without a GPU

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
    chunks = int(gib * (1 << 30)) // CHUNK_BYTES
    try:
        import numpy as np
    except ImportError:  # CPU dry runs: any deterministic bytes do
        with open(path, "wb") as f:
            for i in range(chunks):
                f.write(i.to_bytes(8, "little") * (CHUNK_BYTES // 8))
        return
    base = np.random.default_rng(0).integers(0, 2**32, CHUNK_BYTES // 4, dtype=np.uint32)
    with open(path, "wb") as f:
        for i in range(chunks):
            (base ^ np.uint32((i * 2654435761) & 0xFFFFFFFF)).tofile(f)


def checksum(data):
    # Position-sensitive: chunk sums weighted by chunk index, on the GPU.
    import torch

    n = CHUNK_BYTES // 4
    total = 0
    for i, start in enumerate(range(0, data.numel(), n)):
        total += int(data[start:start + n].sum(dtype=torch.int64).item()) * (i + 1)
    return total


class HostCounter:
    """The CPU stand-in of the GPU counter (dry runs only)."""

    def __init__(self):
        self.value = 0

    def __iadd__(self, n):
        self.value += n
        return self

    def item(self):
        return self.value


def serve_on_cpu(weights, state_dir):
    import hashlib

    started = time.time()
    with open(weights, "rb") as f:
        data = f.read()

    def host_checksum():
        return int.from_bytes(hashlib.sha256(data).digest()[:6], "little")

    loop(state_dir, HostCounter(), host_checksum, time.time() - started)


def loop(state_dir, counter, current_checksum, load_s):
    initial = current_checksum()
    status_path = os.path.join(state_dir, "status.json")
    request_path = os.path.join(state_dir, "checksum.request")
    while True:
        counter += 1
        write_json(status_path, {"pid": os.getpid(), "ready": True, "counter": int(counter.item()),
                                 "checksum": initial, "load_s": load_s})
        if os.path.exists(request_path):
            with open(request_path) as f:
                nonce = f.read().strip()
            os.unlink(request_path)
            write_json(os.path.join(state_dir, "checksum.reply"), {"nonce": nonce, "checksum": current_checksum()})
        time.sleep(0.01)


def serve(weights, state_dir):
    if os.environ.get("KYBERNATE_WORKLOAD_DEVICE") == "cpu":
        return serve_on_cpu(weights, state_dir)
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
    counter = torch.zeros(1, dtype=torch.int64, device="cuda")
    loop(state_dir, counter, lambda: checksum(data), time.time() - started)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make-weights":
        make_weights(sys.argv[2], float(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
